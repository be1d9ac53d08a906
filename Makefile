# Agented: one command to run the service, one to test it. Needs only python3 and make;
# uv is installed into .tools/ when it is not on PATH.
UV_VERSION := 0.13.8
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
export UV

.PHONY: help setup run dev test sanity proxy verify lint format dashboard bench clean

help:  ## list the commands
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: .pyc files written at install; where PYTHONDONTWRITEBYTECODE is
# set (as on CI machines) every interpreter would otherwise compile Flask, the SDK and
# gevent from source, and the proxy suite starts about a hundred of them
setup: $(UV)  ## install uv if missing, then the pinned environment in .venv
	$(UV) sync --quiet --compile-bytecode

run: setup  ## serve on 127.0.0.1:20000 under Gunicorn's gevent worker
	$(UV) run --no-sync gunicorn -c backend/gunicorn.conf.py

dev: setup  ## Flask's development server on 127.0.0.1:20000
	$(UV) run --no-sync python backend/run.py --port 20000

test: setup  ## the whole suite: sanity, then proxy (real servers on loopback)
	$(UV) run --no-sync pytest

sanity: setup  ## fast checks, no network
	$(UV) run --no-sync pytest -m sanity

proxy: setup  ## real Gunicorn, Bugsink and recording sinks on loopback
	$(UV) run --no-sync pytest -m proxy

verify: setup  ## the whole suite (sanity first, then proxy), then its truth table
	$(UV) run --no-sync pytest --truths-enforce
	@cat reports/truth-table.md

lint: setup  ## ruff check and ruff format --check
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

format: setup  ## apply ruff's fixes and formatting
	$(UV) run --no-sync ruff check --fix .
	$(UV) run --no-sync ruff format .

dashboard: setup  ## a local Bugsink on loopback: URL, login and a DSN for .env
	$(UV) run --no-sync python scripts/dashboard.py $(ARGS)

bench: setup  ## measure what error tracking costs (bench/results.json)
	$(UV) run --no-sync python bench/run.py

clean:  ## remove the environment, reports and caches
	rm -rf .venv .tools reports .pytest_cache .ruff_cache .hypothesis
