# The README's two commands: `make run` (the quickstart on an embedded local Ray) and `make test`.
# Each creates the virtual environment it needs on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch (this machine's disk has it); GPU users install their own torch first.
TORCH ?= torch==2.13.0

.PHONY: install run test bench

install: $(VENV)/.installed

# uv installs in parallel and compiles bytecode on every core (pip took 190 s here, uv 70 s). It
# does not read pip's configuration, so it is handed pip's find-links, where a machine may keep
# its torch build (this one does: /opt/wheels).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.13,<0.14'
	UV_FIND_LINKS="$${UV_FIND_LINKS:-$$($(PY) -m pip config get global.find-links 2>/dev/null)}" \
		$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode $(TORCH) -e '.[dev]'
	touch $@

run: install
	$(VENV)/bin/o2o quickstart

test: install
	$(PY) -m pytest -q --durations=15 tests

bench: install
	$(PY) benchmarks/throughput.py
