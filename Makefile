# videogen: development tasks. A fresh machine needs only Python 3.11 and make:
# `make test` creates .venv from requirements-dev.txt on first use (and again when a
# requirements file changes); `make validate` / `make build` create .venv-sam with the
# pinned SAM CLI the same way.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first of these that is Python 3.11 (checked when a venv is created).
PYTHON ?= $(firstword $(shell command -v python3.11 python3 2>/dev/null))
VENV := .venv
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0

VENV_STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
PIP_FLAGS := --disable-pip-version-check --no-input --quiet

# SAM works offline but needs a region; no telemetry from development machines or CI.
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help install lint test validate build bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

define check_python
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "$(PYTHON) is not Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
endef

$(VENV_STAMP): requirements-dev.txt layers/videogen/requirements.txt layers/videogen/requirements-xray.txt
	$(check_python)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -r requirements-dev.txt
	touch $@

$(SAM_STAMP):
	$(check_python)
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install $(PIP_FLAGS) aws-sam-cli==$(SAM_CLI_VERSION)
	rm -f $(SAM_VENV)/.installed-*
	touch $@

install: $(VENV_STAMP) ## Create .venv with the development dependencies

lint: $(VENV_STAMP) ## ruff (lint and format check) and mypy on the layer package
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint ## lint, then the whole test suite
	$(VENV)/bin/pytest

validate: $(SAM_STAMP) ## sam validate --lint (cfn-lint) on template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template-file template.yaml

build: $(SAM_STAMP) ## sam build (functions and the videogen layer) into .aws-sam/
	LAYER_PYTHON="$(abspath $(SAM_VENV))/bin/python" $(SAM_VENV)/bin/sam build --template-file template.yaml

bench: $(VENV_STAMP) ## Run every bench/*.py with its defaults
	@shopt -s nullglob; scripts=(bench/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmarks in bench/"; exit 0; fi; \
	for script in "$${scripts[@]}"; do echo "== $$script"; $(VENV)/bin/python "$$script" || exit 1; done

clean: ## Remove build output and caches (keeps the venvs)
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv*' -prune -exec rm -rf {} +

# ---- Local stack (no AWS account, no Docker): docs/local-stack.md ----------------------

PORT ?= 3000

.PHONY: demo dev

demo: $(VENV_STAMP) ## Run the whole pipeline locally: one job per route, MP4s copied to out/videos/
	$(VENV)/bin/python -m local.demo

dev: $(VENV_STAMP) ## Keep the local stack running on PORT (default 3000) and print curl examples
	$(VENV)/bin/python -m local.dev --port $(PORT)
