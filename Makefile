# Each target creates .venv when missing (or when pyproject.toml changed), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench gpu-check reproduce clean

# With an NVIDIA GPU, JAX's CUDA build too: tools/accelerator_extra.sh says which, in a line.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "skinjax needs Python 3.11+, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	extras=$$(sh tools/accelerator_extra.sh test) && $(PY) -m pip install --quiet -e ".[$$extras]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) launch/demo.py --workdir=runs/demo

# Three workers on 2 cores, each taking whole test files (a file's fixtures are built
# once): tests wait on the processes they start, and two workers left a seventh of the CPU
# idle. pytest alone on this 2-core Xeon, back to back at one tree, 2026-12-02: 492 s with
# two workers, 449 s with three; 403 s once conftest.py also turned LLVM's passes off.
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
# lint-imports: the package floors of pyproject's [tool.importlinter] (ARCHITECTURE.md).
test: setup
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The papers' tables (launch/reproduce_plan.py) run and written into RESULTS.md between
# their markers: resumable, a rerun skips finished runs. SCALE=cpu (2 cores, the real data in
# ../shared/data), paper (an accelerator), tiny (synthetic, what CI runs).
SCALE ?= cpu
REPRODUCE_FLAGS ?=
reproduce: setup
	$(PY) launch/reproduce.py --scale=$(SCALE) $(REPRODUCE_FLAGS)

# The checks too slow for CI (the whole real datasets, native sizes); run before resolving.
test-slow: setup
	$(PY) -m pytest -m slow -s

# The benchmark's own venv, inside .venv/ so git ignores it and `make clean` removes it:
# torch and torchvision (several GB) are for the baselines only.
BENCH_VENV := $(VENV)/bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "skinjax needs Python 3.11+, found " + sys.version'
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	extras=$$(sh tools/accelerator_extra.sh bench) && $(BENCH_VENV)/bin/python -m pip install --quiet -e ".[$$extras]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/throughput.py --preset=cpu

# The GPU goals on a machine as it comes (benchmarks/gpu_check.py): whatever python is
# there, the skinjax of this tree, no .venv or install (such a machine may reach no registry).
# GPU_CHECK_FLAGS='--tiny' runs it at a tiny size on the CPU; --output_dir=... elsewhere.
GPU_CHECK_FLAGS ?=
gpu-check:
	PYTHONPATH=.$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_FLAGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
