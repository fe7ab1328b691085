# `make run` and `make test` do everything on a fresh machine: venv, install, run / test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-peers chaos chaos-sql clean setup bytecode browser parity-goldens mermaid-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,all]'
	touch $(STAMP)

# The project's own modules, byte-compiled before anything runs: an editable install leaves no
# .pyc files, and where PYTHONDONTWRITEBYTECODE is set (as on this machine) Python reads them
# but never writes them, so every process the suite starts (CLI runs, workers) would compile
# the modules it imports again. Measured 2026-12-04, interleaved: `flowcraft --help` 0.74x the
# wall time; tests/redis/test_cli_redis.py with the conformance CLI tests 0.74x the CPU. Only
# sources changed since are compiled again.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 -x '/\.(venv|bench|git)/' .

run: $(STAMP) bytecode
	$(BIN)/flowcraft run examples/order_fulfilment.json --registry examples.orders:registry \
		--input "$$(cat examples/order.json)"

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest-xdist workers: most of the suite waits (subprocesses, servers, TTLs, Redis round trips)
# rather than computes, so more workers than cores overlap those waits (README: Tests).
# Not more than 4 by default (2026-12-03, 2 cores, shared machine): 8 ran a conformance subset
# (memory + redis + sqlite, 388 tests) in 0.75x the wall time of 4 (farm-bench, 2 interleaved
# pairs, 0.71-0.79) for 1.22x the CPU, but made 4 CLI subprocess tests of tests/redis time out
# (they pass at 2); at 6 they passed, one at 131 s of its 150 s bound. The CLI's start-up, not
# the workers, is what those tests wait for.
PYTEST_WORKERS ?= 4

# The dashboard's browser test (tests/redis/test_ui_browser.py) drives Debian's chromium through
# Playwright's Python package, which is told where it is: no browser is downloaded.
CHROMIUM ?= /usr/bin/chromium

browser:
	test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium; }

pytest: $(STAMP) bytecode browser
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.table

# Ours against Flowcraft TS (+ BullMQ), Celery, bare Dramatiq and DBOS, interleaved in one run
# (BENCHMARKS.md). The peers live in .bench/ (git-ignored): npm packages pinned by
# benchmarks/peers/ts/package-lock.json, and a venv of their own for Celery and DBOS.
PEERS := .bench/.installed

$(PEERS): benchmarks/peers/ts/package.json benchmarks/peers/ts/package-lock.json
	mkdir -p .bench/ts
	cp benchmarks/peers/ts/package.json benchmarks/peers/ts/package-lock.json .bench/ts/
	cd .bench/ts && npm ci --no-audit --no-fund --loglevel=error
	test -x .bench/venv/bin/python || $(PYTHON) -m venv .bench/venv
	.bench/venv/bin/python -m pip install --quiet 'celery[redis]==5.7.0' 'dbos==3.4.0'
	touch $@

bench-peers: $(STAMP) $(PEERS)
	$(BIN)/python -m benchmarks.peers

# 2,000 workflows under faults on a private redis-server (not part of `make test`, which runs
# a 60-second version of it: tests/redis/test_chaos.py).
chaos: $(STAMP)
	$(BIN)/python tests/redis/chaos.py --runs 2000

# The same soak on the SQL driver: a private PostgreSQL restarted, crashed and its sessions
# terminated; a private MariaDB SIGKILLed and restarted (README: Reliability).
SQL_CHAOS_RUNS ?= 500

chaos-sql: $(STAMP)
	$(BIN)/python tests/redis/chaos.py --runs $(SQL_CHAOS_RUNS) --backend postgresql
	$(BIN)/python tests/redis/chaos.py --runs $(SQL_CHAOS_RUNS) --backend mariadb

# The goldens tests/test_builder_parity.py compares the Python builder against: blueprints built by
# Flowcraft's own builder (npm flowcraft, pinned in tests/builder_parity/package-lock.json).
# Needs node and npm; `make test` does not (the goldens are committed). Review the diff, commit.
PARITY_DIR ?= .bench/builder-parity

parity-goldens:
	mkdir -p $(PARITY_DIR)
	cp tests/builder_parity/package.json tests/builder_parity/package-lock.json $(PARITY_DIR)/
	cd $(PARITY_DIR) && npm ci --no-audit --no-fund --silent
	node tests/builder_parity/flows.mjs $(PARITY_DIR) > tests/builder_parity/goldens.json
	git diff --stat -- tests/builder_parity/goldens.json

# Every chart `flowcraft graph` draws for the goldens, the examples and a blueprint full of text
# to escape, parsed by Mermaid's own parser (npm mermaid under jsdom, pinned in
# tests/builder_parity/mermaid). Needs node and npm; not part of `make test`.
mermaid-check: $(STAMP)
	mkdir -p $(PARITY_DIR)/mermaid
	cp tests/builder_parity/mermaid/package.json tests/builder_parity/mermaid/package-lock.json \
		$(PARITY_DIR)/mermaid/
	cd $(PARITY_DIR)/mermaid && npm ci --no-audit --no-fund --silent
	rm -rf $(PARITY_DIR)/charts
	$(BIN)/python tests/builder_parity/mermaid_charts.py $(PARITY_DIR)/charts \
		| xargs node tests/builder_parity/mermaid/parse.mjs $(PARITY_DIR)/mermaid

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
