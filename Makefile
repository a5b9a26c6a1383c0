# cdpsim: everything starts from a fresh clone with only python3 on the machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cdpsim demo

lint: $(STAMP)
	$(VENV)/bin/ruff check generator locustfiles tests bench
	$(VENV)/bin/ruff format --check generator locustfiles tests bench
	$(VENV)/bin/mypy generator
	$(VENV)/bin/lint-imports

# Tests marked slow (long end-to-end runs) are left to test-slow.
test: lint
	$(VENV)/bin/pytest -m "not slow"

test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
