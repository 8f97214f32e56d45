# videogen: development tasks. A fresh machine needs only Python 3.11 and make:
# `make test` creates .venv from requirements-dev.txt on first use (and again when a
# requirements file changes); `make validate` / `make build` create .venv-sam with the
# pinned SAM CLI the same way. The virtualenvs are made with uv when it can be had (on the
# PATH, or pip-installed once into .venv-uv), else with pip; USE_UV=0 forces pip.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first of these that is Python 3.11 (checked when a venv is created).
PYTHON ?= $(firstword $(shell command -v python3.11 python3 2>/dev/null))
VENV := .venv
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
# The cfn-lint rules for serverless applications (github.com/awslabs/serverless-rules),
# installed beside the SAM CLI's own cfn-lint.
CFN_LINT_SERVERLESS_VERSION := 0.3.6

UV_VENV := .venv-uv
UV_VERSION := 0.13.8
USE_UV ?= 1

VENV_STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_SERVERLESS_VERSION)
PIP_FLAGS := --disable-pip-version-check --no-input --progress-bar off

# SAM works offline but needs a region; no telemetry from development machines or CI.
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help install lint test validate build bench clean openapi smoke permissions

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

define check_python
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "$(PYTHON) is not Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
endef

# $(call make_venv,DIR,WHAT,pip install arguments): create DIR if needed and install into it,
# saying what it does. uv: the one on the PATH, else .venv-uv/bin/uv (made once with pip);
# if neither can be had, pip (its own progress lines, no --quiet). The venv gets pip too
# (uv's --seed), so `DIR/bin/pip install` keeps working.
define make_venv
	$(check_python)
	@set -e; uv=""; \
	if [ "$(USE_UV)" != 0 ]; then \
	    uv="$$(command -v uv || true)"; \
	    if [ -z "$$uv" ] && [ ! -x $(UV_VENV)/bin/uv ]; then \
	        echo "make: installing uv $(UV_VERSION) into $(UV_VENV) with pip (once; USE_UV=0 skips it)"; \
	        { $(PYTHON) -m venv $(UV_VENV) && $(UV_VENV)/bin/python -m pip install $(PIP_FLAGS) --quiet uv==$(UV_VERSION); } \
	            || { echo "make: could not install uv; using pip"; rm -rf $(UV_VENV); }; \
	    fi; \
	    if [ -z "$$uv" ] && [ -x $(UV_VENV)/bin/uv ]; then uv=$(UV_VENV)/bin/uv; fi; \
	fi; \
	if [ -n "$$uv" ]; then \
	    echo "make: installing $(2) into $(1) with $$uv"; \
	    test -x $(1)/bin/python || "$$uv" venv --quiet --seed --python $(PYTHON) $(1); \
	    "$$uv" pip install --python $(1)/bin/python $(3); \
	else \
	    echo "make: installing $(2) into $(1) with pip (a minute or two)"; \
	    test -x $(1)/bin/python || $(PYTHON) -m venv $(1); \
	    $(1)/bin/python -m pip install $(PIP_FLAGS) $(3); \
	fi
endef

$(VENV_STAMP): requirements-dev.txt layers/videogen/requirements.txt layers/videogen/requirements-xray.txt client/pyproject.toml functions/probe/requirements.txt
	$(call make_venv,$(VENV),the development dependencies and the videogen client,-r requirements-dev.txt -e client/)
	@touch $@

$(SAM_STAMP):
	$(call make_venv,$(SAM_VENV),the SAM CLI $(SAM_CLI_VERSION) and cfn-lint-serverless,aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint-serverless==$(CFN_LINT_SERVERLESS_VERSION))
	@rm -f $(SAM_VENV)/.installed-*
	@touch $@

install: $(VENV_STAMP) ## Create .venv with the development dependencies and the videogen client

lint: $(VENV_STAMP) ## ruff (lint and format check) and mypy on the layer package and the client
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest-xdist: one worker per core (TEST_WORKERS=0 runs in this process); the e2e tests share
# one worker, so one local stack serves them (tests/e2e/conftest.py). The permission tests
# translate template.yaml with the SAM CLI's own translator (.venv-sam).
TEST_WORKERS ?= auto

test: lint $(SAM_STAMP) ## lint, then the whole test suite (in parallel: TEST_WORKERS, default one per core)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup

validate: $(SAM_STAMP) ## sam validate --lint (cfn-lint), then the cfn-lint-serverless rules, on template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template-file template.yaml
	@# Justified exceptions: WS1000 wants the literal `Tracing: Active`, but tracing is the
	@# `Tracing` parameter (default Active; PassThrough saves 0.2-0.3 s a cold start, README);
	@# ES6000 wants a redrive policy on every queue, and the flagged ones are dead-letter queues.
	$(SAM_VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules --ignore-checks WS1000 ES6000

build: $(SAM_STAMP) ## sam build (functions and the videogen layer) into .aws-sam/, then check sizes
	LAYER_PYTHON="$(abspath $(SAM_VENV))/bin/python" $(SAM_VENV)/bin/sam build --template-file template.yaml
	$(SAM_VENV)/bin/python scripts/artifact_sizes.py

bench: $(VENV_STAMP) ## Run every bench/*.py with its defaults
	@shopt -s nullglob; scripts=(bench/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmarks in bench/"; exit 0; fi; \
	for script in "$${scripts[@]}"; do echo "== $$script"; $(VENV)/bin/python "$$script" || exit 1; done

openapi: $(VENV_STAMP) ## Regenerate docs/openapi.json from the handlers' Powertools resolvers
	$(VENV)/bin/python scripts/openapi.py

smoke: $(VENV_STAMP) ## Check a deployed stack without starting a paid job: make smoke STACK=name
	@test -n "$(STACK)" || { echo "usage: make smoke STACK=<stack name>" >&2; exit 2; }
	$(VENV)/bin/python scripts/smoke.py --stack $(STACK)

permissions: $(VENV_STAMP) $(SAM_STAMP) ## Run the suites recording AWS calls; rewrite the permission table in docs/deploy.md
	VIDEOGEN_PERMISSIONS_REPORT=.permissions.json $(VENV)/bin/pytest
	$(VENV)/bin/python scripts/deploy_report.py --permissions .permissions.json --write docs/deploy.md

clean: ## Remove build output and caches (keeps the venvs)
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv*' -prune -exec rm -rf {} +

# ---- Local stack (no AWS account, no Docker): docs/local-stack.md ----------------------

PORT ?= 3000

.PHONY: demo dev

demo: $(VENV_STAMP) ## Run the whole pipeline locally: one job per route, MP4s copied to out/videos/
	$(VENV)/bin/python -m local.demo

dev: $(VENV_STAMP) ## Keep the local stack running on PORT (default 3000) and print curl and videogen examples
	$(VENV)/bin/python -m local.dev --port $(PORT)
