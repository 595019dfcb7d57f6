# Each target creates .venv when missing (or when pyproject.toml changed), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "skinjax needs Python 3.11+, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) launch/demo.py --workdir=runs/demo

test: setup
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs .pytest_cache
