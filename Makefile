# tierline: every target calls the CLI or a tool; `make help` lists them.
# `make demo` and `make test` bootstrap .venv themselves (CPython 3.12 + uv, from uv.lock).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON312 ?= $(shell scripts/find-python312)
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tierline-synced
STRATEGY ?= sma_cross

# Offline-friendly, reproducible runs: a stable numba cache, no MLflow/telemetry calls home.
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export UV_LINK_MODE := copy

.PHONY: help setup demo test test-all lint bench lab ui compare promote trade clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	@test -n "$(PYTHON312)" || { echo "CPython 3.12 is required (see scripts/find-python312)"; exit 1; }
	$(PYTHON312) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON312) --compile-bytecode
	@touch $(STAMP)

setup: $(STAMP) ## create .venv from uv.lock (CPython 3.12, bytecode compiled)

demo: setup ## run the main job on the embedded synthetic data (no network, no ../shared)
	$(BIN)/tierline data sample
	$(BIN)/tierline data validate
	$(BIN)/tierline data ls
	$(BIN)/tierline run $(STRATEGY) --exchange synthetic --symbol BTC/USDT --timeframe 5m
	@echo "demo: promotion gate with the DEMO policy (promotion/demo-policy.toml: synthetic data allowed, relaxed thresholds; never for real money)"
	$(BIN)/tierline promote $(STRATEGY) --exchange synthetic --policy promotion/demo-policy.toml
	@echo "demo: done. 'tierline registry show $(STRATEGY)', 'make compare', 'make trade' (dry run); real data: 'make promote STRATEGY=x' with promotion/policy.toml"

lint: setup ## ruff + mypy
	$(BIN)/ruff check src tests benchmarks research/scripts
	$(BIN)/ruff format --check src tests benchmarks research/scripts
	$(BIN)/tierline notebook strip --check research/notebooks/*.ipynb
	$(BIN)/mypy

test: setup lint ## lint, then the test suite without the slow marker (what CI runs)
	$(BIN)/pytest -m "not slow" -q

test-all: setup ## every test, the slow ones too
	$(BIN)/pytest -q

bench: setup ## benchmarks; figures are written to bench/results/
	@mkdir -p bench/results
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lab: setup ## JupyterLab on 127.0.0.1 over research/notebooks
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir research/notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

ui: setup ## MLflow UI on 127.0.0.1 against the workspace store
	$(BIN)/tierline ui

compare: setup ## the tiers of STRATEGY's latest pipeline side by side, HTML report in reports/
	$(BIN)/tierline compare $(STRATEGY)

promote: setup ## promotion gate for STRATEGY's latest pipeline (ARGS="--params ... --run-missing ...")
	$(BIN)/tierline promote $(STRATEGY) $(ARGS)

trade: setup ## freqtrade trade the champion of STRATEGY (dry run; LIVE=1 real money, REPLAY=1 local replay)
	$(BIN)/tierline trade $(STRATEGY) $(if $(filter 1,$(LIVE)),--live,) $(if $(filter 1,$(REPLAY)),--replay,)

clean: ## remove the venv, caches and generated run outputs (not data/parquet)
	rm -rf $(VENV) $(TOOLS) .cache .pytest_cache .mypy_cache .ruff_cache
