# Spinnakr: `make run` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: run test lint format setup build chromium stop clean

run: setup build ## Set everything up and run web, worker and beat on the embedded servers
	$(PY) -m spinnakr.run

test: setup build chromium ## Set up the same way and run the whole suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff, ruff format --check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

setup: $(STAMPS)/venv

$(STAMPS)/venv: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

build: $(STAMPS)/npm static/build/.built

$(STAMPS)/npm: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

static/build/.built: $(STAMPS)/npm build.mjs $(shell find static/src -type f 2>/dev/null)
	npm run --silent build
	@touch $@

# Browser tests drive Debian's chromium. Install it when missing and possible (root with apt);
# otherwise the browser tests fail with a message naming the command.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null)); \
	  else echo "chromium is missing: the browser tests will fail (install it: sudo apt-get install chromium)"; fi; }

stop: ## Stop the embedded servers if something left them running
	$(PY) -m spinnakr.embedded stop

clean:
	rm -rf $(VENV) $(STAMPS) node_modules static/build
