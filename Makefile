# cdpsim: everything starts from a fresh clone with only python3 on the machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

# Some shells set PYTHONDONTWRITEBYTECODE; then every process compiles every module it imports
# from source (about 0.5 s of a short `cdpsim` run, paid again by each subprocess of the
# tests). Our own targets keep the byte-code caches (they are in .gitignore).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test test-slow lint bench clean

# uv installs the pinned set in about half pip's time; pip is the fallback where uv cannot be
# had. Both install exactly constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	( $(PY) -m pip install -q uv==$(UV_VERSION) && \
	  $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -c constraints.txt -e '.[dev]' ) || \
	( $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -c constraints.txt -e '.[dev]' )
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cdpsim demo

lint: $(STAMP)
	$(VENV)/bin/ruff check generator locustfiles tests bench
	$(VENV)/bin/ruff format --check generator locustfiles tests bench
	$(VENV)/bin/mypy generator
	$(VENV)/bin/lint-imports

# `make test` deselects tests marked slow (pyproject's addopts); `make test-slow` runs only them.
test: lint
	$(VENV)/bin/pytest -m "not slow"

# The longer end-to-end runs (@pytest.mark.slow), left out of `make test`.
test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
