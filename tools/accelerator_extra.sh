#!/bin/sh
# Prints the pyproject extras `make setup` installs: "$1" (e.g. test), plus JAX's CUDA build
# when an NVIDIA GPU answers nvidia-smi; says its choice in one line on stderr.
#
#   tools/accelerator_extra.sh test   ->  test,cuda13  (driver >= 580: CUDA 13)
#                                         test,cuda12  (an older driver)
#                                         test         (no working nvidia-smi)
#
# SKINJAX_ACCELERATOR=cpu|cuda12|cuda13|tpu overrides the guess (a TPU is not detected).
base="$1"

with() {
  echo "setup: $2; installing .[${base:+$base,}$1]" >&2
  echo "${base:+$base,}$1"
}

case "${SKINJAX_ACCELERATOR:-}" in
  cuda12|cuda13|tpu) with "$SKINJAX_ACCELERATOR" "SKINJAX_ACCELERATOR=$SKINJAX_ACCELERATOR"
                     exit 0 ;;
  cpu) echo "setup: SKINJAX_ACCELERATOR=cpu; installing .[$base] (CPU-only JAX)" >&2
       echo "$base"; exit 0 ;;
  '') ;;
  *) echo "setup: SKINJAX_ACCELERATOR=$SKINJAX_ACCELERATOR: expected cpu, cuda12, cuda13" \
          "or tpu" >&2
     exit 1 ;;
esac

# The first GPU's driver, e.g. 580.159.03; empty when nvidia-smi is missing or fails.
found=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null) || found=''
driver=$(echo "$found" | head -n 1)
major=${driver%%.*}
case "$major" in
  ''|*[!0-9]*)
    echo "setup: no NVIDIA GPU (nvidia-smi missing or failing); installing .[$base]" \
         "(CPU-only JAX)" >&2
    echo "$base" ;;
  *)
    # CUDA 13 wheels need driver 580 or newer.
    if [ "$major" -ge 580 ]; then
      with cuda13 "nvidia-smi: driver $driver (CUDA 13)"
    else
      with cuda12 "nvidia-smi: driver $driver (CUDA 12)"
    fi ;;
esac
