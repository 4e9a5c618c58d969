# The two commands: `make run` and `make test`. Both install what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
WEB_STAMP := web/node_modules/.installed
DEB_STAMP := .debian-packages
DATA ?= data
WEB_SOURCES := $(shell find web/src web/*.html web/public -type f 2>/dev/null) web/package.json web/vite.config.ts web/tsconfig.json src/lockstep/link/wording.json

.PHONY: run test lint typecheck unit pytest deps web clean

run: $(PY_STAMP) web/dist/index.html
	$(BIN)/lockstep serve --data $(DATA) --lan

test: deps web/dist/index.html lint typecheck unit pytest

deps: $(PY_STAMP) $(WEB_STAMP) $(DEB_STAMP)

# setup.py builds the one C extension (lockstep/ntp/nts/_fastpath.c, against Nettle).
$(PY_STAMP): pyproject.toml setup.py src/lockstep/ntp/nts/_fastpath.c $(DEB_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(DEB_STAMP): scripts/ensure-debian-packages.sh
	scripts/ensure-debian-packages.sh
	touch $@

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	cd web && npm run --silent build

# --no-cache: ruff's cache is keyed on each file, but whether an import is first party depends on which
# other files exist (tests/ helper modules), so a cached pass can hide what a fresh clone reports.
lint: $(PY_STAMP) $(WEB_STAMP)
	$(BIN)/ruff check --no-cache src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	cd web && npm run --silent lint

typecheck: $(PY_STAMP) $(WEB_STAMP)
	$(BIN)/mypy
	cd web && npm run --silent typecheck

# The browser code's unit tests that need no browser (state machines, pure cores): Vitest under Node, seconds.
unit: $(WEB_STAMP)
	cd web && npm run --silent test

# Test files run in 4 worker processes (one file stays on one worker, so module-scoped servers and browsers
# are never shared across processes); the suite waits on real peers far more than it computes.
pytest: $(PY_STAMP) $(DEB_STAMP) web/dist/index.html
	$(BIN)/pytest -n 4 --dist loadfile

clean:
	rm -rf $(VENV) web/node_modules web/dist $(DEB_STAMP)
