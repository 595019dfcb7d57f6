# Each target creates .venv when missing (or when pyproject.toml changed), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "skinjax needs Python 3.11+, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
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
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/throughput.py --preset=cpu

clean:
	rm -rf $(VENV) runs .pytest_cache
