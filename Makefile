# The README's two commands: `make run` (the quickstart on an embedded local Ray) and `make test`.
# Each creates the virtual environment it needs on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch (this machine's disk has it); GPU users install their own torch first.
TORCH ?= torch==2.13.0

.PHONY: install run test bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(VENV)/bin/o2o quickstart

test: install
	$(PY) -m pytest -q --durations=15 tests

bench: install
	$(PY) benchmarks/throughput.py
