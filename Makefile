# Two entry points for a fresh machine (README's quick start):
#   make demo   check the seed design at 2 tabs: verdicts and a counterexample
#   make test   ruff, then the whole test suite (installs the cluster extra, Ray; and redis-server, chromium, spin and gcc from Debian if missing)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kvheal-installed

.PHONY: demo test bench redis chromium spin lint

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

# `kvheal check` exits 1 when a property is violated, which is the point of the demo.
demo: $(STAMP)
	$(BIN)/kvheal check --tabs 2 --per-tab 1; test $$? -le 1

redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server from Debian's packages" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# Headless Chromium opens `kvheal report`'s HTML in tests/report/test_browser.py.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian's packages" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# SPIN and gcc cross-check `kvheal export --promela` (tests/model/test_promela.py) and run
# beside kvheal in `kvheal bench --spin`.
spin:
	@{ command -v spin >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1; } || { \
	  echo "installing spin and gcc from Debian's packages" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq spin gcc >/dev/null; }

# Lint and format check first (seconds), then the suite; doctests run inside it
# (tests/test_doctests.py runs every installed module's examples).
test: $(STAMP) redis chromium spin lint
	$(BIN)/python -m pytest -q --durations=30

bench: $(STAMP)
	$(BIN)/python -m bench

# ruff's lint and format check (configured in pyproject.toml); part of `test`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
