# pg-notify-bridge developer tasks. `make help` lists them.
# Everything runs from .venv, which `make venv` creates and keeps in step with
# setup.cfg. The browser tests use Debian's /usr/bin/chromium (apt-get install
# chromium; .ci/run does it): never `playwright install`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
TABLES ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test lint demo install-triggers bench dist clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{ printf "  make %-18s %s\n", $$1, $$2 }'

venv: $(STAMP) $(BENCH_STAMP) ## create .venv and install the project with its test and bench extras

# Reinstalls only when the packaging files change, so `make test` stays fast.
# The bench extra (daphne, channels, matplotlib...) is installed only for
# `make bench` and `make venv`: `make test` and CI never need it.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@touch $@

lint: $(STAMP) ## ruff check, and mypy on the daemon
	$(PY) -m ruff check .
	$(PY) -m mypy bridge

test: lint ## ruff check, then the whole pytest suite (PYTEST_ARGS=... to narrow it)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP) ## run the demo: embedded PostgreSQL, Django app, bridge daemon
	$(PY) -m example.demo

install-triggers: $(STAMP) ## install triggers: make install-triggers DATABASE_URL=... TABLES="public.example_task"
	@test -n "$$DATABASE_URL" || { echo 'make install-triggers: set DATABASE_URL, e.g. make install-triggers DATABASE_URL=postgresql://user@host/db TABLES="public.example_task"' >&2; exit 2; }
	@test -n "$(strip $(TABLES))" || { echo 'make install-triggers: set TABLES, e.g. TABLES="public.example_task public.other"' >&2; exit 2; }
	$(PY) -m bridge install-triggers $(TABLES)

bench: $(BENCH_STAMP) ## run the benchmarks (BENCH_ARGS=--quick: under 2 minutes; full: under 20)
	$(PY) -m bench $(BENCH_ARGS)

dist: $(STAMP) ## build the sdist and the wheel into dist/ (pip install dist/*.whl installs it)
	rm -rf dist
	$(PY) -m build --outdir dist .

clean: ## remove caches and build output (keeps .venv, the demo's .pgdata and its key)
	rm -rf .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean ## also stop the demo's PostgreSQL and remove .venv, .pgdata and the demo's key
	@if [ -x $(PY) ] && [ -d .pgdata ]; then $(PY) -m example.devdb stop .pgdata; fi
	rm -rf $(VENV) .pgdata .demo_secret_key
