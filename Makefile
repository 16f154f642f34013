# make test: set up .venv and pass the whole suite.  make demo: set up and run the main job.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo setup bench clean typecheck

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) examples/core_demo.py

bench: setup
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) build artifacts *.egg-info .pytest_cache .mypy_cache
