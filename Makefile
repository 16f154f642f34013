# make test: set up .venv and pass the whole suite.  make demo: set up and run the main job.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo setup bench clean typecheck test-compat lab docs chromium notebooks diagrams graphviz docs-serve executed-notebooks

# A second interpreter and ipykernel 6 for the fork and kernel tests (Python 3.12+ is where the
# fork DeprecationWarning exists). Skipped, with a note, where no Python 3.13 is installed.
COMPAT_PY ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
COMPAT_VENV ?= .venv-compat
# The tests count SysV message queues machine-wide: run them in an IPC namespace of their own
# where the system allows it, so another program's queues are never mistaken for a leak.
ISOLATE ?= $(shell unshare --ipc true 2>/dev/null && echo unshare --ipc)

setup: $(STAMP)

# setup.py builds the queue's C accelerator (optional: without a compiler the pure-Python path
# is used); editing it or the C source re-runs the install, which rebuilds the extension.
BUILD_INPUTS := pyproject.toml setup.py procmagic/core/_queue_fast.c

$(STAMP): $(BUILD_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

test: setup test-compat docs chromium graphviz
	$(ISOLATE) $(PY) -m pytest -q

# The widgets' browser test drives Debian's Chromium with Playwright (which downloads no browser
# here). CI runs as root with no stdin; elsewhere sudo must not ask for a password.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium for the browser test (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get update -q </dev/null && $(SUDO) apt-get install -y -q chromium </dev/null; \
	fi

# Graphviz renders the docs' diagrams (docs/diagrams/*.dot -> .svg); the docs test checks that
# the committed SVGs match their sources.
graphviz:
	@if ! command -v dot >/dev/null; then \
		echo "installing graphviz for the docs' diagrams (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get update -q </dev/null && $(SUDO) apt-get install -y -q graphviz </dev/null; \
	fi

# Re-render the diagrams after editing a .dot file (commit both).
DIAGRAMS = $(patsubst %.dot,%.svg,$(wildcard docs/diagrams/*.dot))
diagrams: graphviz $(DIAGRAMS)
docs/diagrams/%.svg: docs/diagrams/%.dot
	dot -Tsvg $< -o $@

test-compat:
	@if [ -z "$(COMPAT_PY)" ] || ! "$(COMPAT_PY)" -c 'import sys' 2>/dev/null; then \
		echo "test-compat: no Python 3.13 here, skipping the Python 3.13 / ipykernel 6 run"; \
	else \
		test -x $(COMPAT_VENV)/bin/python || "$(COMPAT_PY)" -m venv $(COMPAT_VENV); \
		if [ ! -f $(COMPAT_VENV)/.installed ] || [ -n "$$(find $(BUILD_INPUTS) -newer $(COMPAT_VENV)/.installed)" ]; then \
			$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip && \
			$(COMPAT_VENV)/bin/python -m pip install -q -e . 'ipykernel>=6.29,<7' pytest pytest-timeout jupyter_client mypy && \
			touch $(COMPAT_VENV)/.installed; \
		fi; \
		$(ISOLATE) $(COMPAT_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/kernel tests/widgets \
			--ignore=tests/widgets/test_browser.py --ignore=tests/widgets/test_headless.py; \
	fi

# The tour notebook, executed in a real kernel without a browser; the executed notebook and an
# HTML copy go to build/demo (examples/core_demo.py is the plain-Python example). The demo has a
# venv of its own with the runtime and the `demo` extra only (no test tools, no browser driver),
# so a first `make demo` is quick; `make test` sets up the full .venv.
DEMO_VENV ?= .venv-demo
DEMO_PY := $(DEMO_VENV)/bin/python
demo: $(DEMO_VENV)/.installed
	$(DEMO_PY) notebooks/run_notebook.py notebooks/01-tour.ipynb --out build/demo --html

$(DEMO_VENV)/.installed: $(BUILD_INPUTS)
	@test -x $(DEMO_PY) || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_PY) -m pip install -q --upgrade pip
	$(DEMO_PY) -m pip install -q -e '.[demo]'
	@touch $@

# JupyterLab on notebooks/; with jupytext installed, saving a notebook also saves its .py source.
lab: setup
	$(VENV)/bin/jupyter-lab --ServerApp.root_dir=notebooks

# Bring every notebook pair in step (the newer half wins, cell ids are kept) and clear outputs,
# after editing either half outside JupyterLab. notebooks/README.md describes the format.
NOTEBOOK_SOURCES = $(wildcard notebooks/[0-9][0-9]-*.py notebooks/solutions/*.py)
notebooks: setup
	$(VENV)/bin/jupytext --quiet --from py:hydrogen --set-kernel python3 --sync $(NOTEBOOK_SOURCES)
	$(VENV)/bin/jupyter-nbconvert --clear-output --inplace --log-level=WARN $(NOTEBOOK_SOURCES:.py=.ipynb)
	$(VENV)/bin/jupytext --quiet --from py:hydrogen --set-kernel python3 --sync $(NOTEBOOK_SOURCES)

# The documentation site (Material for MkDocs), warnings as errors, into build/site: it works
# from disk (no network, search included) and `make docs-serve` serves it. The notebooks are
# pages of the site with their outputs: each is executed (by run_notebook.py, which keeps late
# --bg output) into docs/notebooks/, again when it or procmagic changed. An unexpected error is kept in
# the page and reported, not fatal here: tests/notebooks is where a notebook must pass.
EXECUTED_NOTEBOOKS = $(patsubst notebooks/%,docs/notebooks/%,$(wildcard notebooks/[0-9][0-9]-*.ipynb notebooks/solutions/*.ipynb))
docs: setup graphviz
	@$(MAKE) --no-print-directory -j2 executed-notebooks
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
	@echo "docs: open build/site/index.html (search works from disk too), or: make docs-serve"

executed-notebooks: $(EXECUTED_NOTEBOOKS)
PROCMAGIC_SOURCES := $(shell find procmagic -name '*.py')
docs/notebooks/%.ipynb: notebooks/%.ipynb notebooks/run_notebook.py $(PROCMAGIC_SOURCES) $(STAMP)
	@mkdir -p $(dir $@)
	$(ISOLATE) $(PY) notebooks/run_notebook.py $< --out $(dir $@) --quiet --allow-errors --no-widget-state

DOCS_PORT ?= 8000
docs-serve: docs
	@echo "docs: http://127.0.0.1:$(DOCS_PORT)/index.html (Ctrl-C stops)"
	$(PY) -m http.server --bind 127.0.0.1 --directory build/site $(DOCS_PORT)

# Every bench in bench/, one after the other (about ten minutes), then one table of figures,
# ratios and targets (also written to build/bench/summary.md). BENCH_ARGS="--only core,queue".
bench: setup
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_VENV) build docs/notebooks artifacts *.egg-info .pytest_cache .mypy_cache
	rm -f procmagic/core/_queue_fast.*.so
