#!/bin/sh
# Builds both libraries into this folder against the oneDNN wheels in the venv $1
# (default ../../../.venv): pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=$(cd "${1:-$here/../../../.venv}" && pwd)
ffi=$("$venv/bin/python" -c 'import jax.ffi; print(jax.ffi.include_dir())')
for name in onednn_primitives patches_sgemm; do
  g++ -O3 -std=c++17 -shared -fPIC -Wall -isystem "$venv/include" -isystem "$ffi" \
    "$here/$name.cc" -L"$venv/lib" -ldnnl -lgomp -Wl,-rpath,"$venv/lib" -o "$here/$name.so"
  echo "built $here/$name.so"
done
