# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need (a venv from PyPI, anvil and solc from npm).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS := server,postgres,devnet,openai,mcp,dev

# `make test-fast`: the quick lane for while you work (under 2 minutes on 2 cores): no
# anvil, no PostgreSQL, no slow tests, small Hypothesis runs. `make test` runs everything.
.PHONY: setup demo demo-mcp test test-fast check stress bench protos contracts clean fuzz pg

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

demo: setup
	$(PY) -m walletd.devnet.demo

# An agent's MCP client pays a devnet chat and a devnet MCP tool through `walletd mcp`.
demo-mcp: setup
	$(PY) -m walletd.devnet.demo_mcp

test: setup
	scripts/test

test-fast: setup
	WALLETD_HYPOTHESIS_PROFILE=fast WALLETD_FUZZ_PROFILE=dev \
	$(PY) -m pytest -n 2 -q -m "not slow and not chain and not postgres" $(PYTEST_ARGS)

check: setup
	scripts/check

# A throwaway PostgreSQL for running tests by hand (`make test` starts its own):
#   export $$(make -s pg)  ...  scripts/pg stop "$$WALLETD_TEST_PG_DIR"
pg:
	@scripts/pg start

# The long fuzz campaign (CI runs the same properties bounded): make fuzz MINUTES=30
MINUTES ?= 10
fuzz: setup
	$(PY) -m tests.adversarial.campaign --minutes $(MINUTES)

# The reliability figures (docs/reliability.md): demands by family, accepted/refused by reason,
# overspend, lost rows, crashes and faults survived. Starts its own anvil, daemons and,
# without WALLETD_TEST_PG_URL, a throwaway PostgreSQL. MINUTES caps the demand phase.
# Then STALLS stalled HTTP/2 connections held against a daemon while a real client pays.
#   make stress DEMANDS=100000 CRASHES=20 MINUTES=10 STALLS=1200
DEMANDS ?= 100000
CRASHES ?= 20
STALLS ?= 1200
stress: setup
	$(PY) -m tests.adversarial.stress --demands $(DEMANDS) --crashes $(CRASHES) --minutes $(MINUTES) \
		--stalls $(STALLS)

# The benchmark figures (docs/benchmarks.md): the x402 SDK anchor, Pay over the socket on
# SQLite (and, with WALLETD_TEST_PG_URL or BENCH_ARGS="--pg URL", on PostgreSQL), and a paid
# chat through the reference x402 client vs walletd (loopback and a 20 ms delay).
# BENCH_ARGS=--smoke only checks that it runs.
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

protos: setup
	scripts/gen_protos

contracts: node_modules/.installed
	node contracts/build.mjs

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
