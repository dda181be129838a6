# dam_pipeline — `make demo` runs the main job on the embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: setup demo test dev lint bench clean

setup: $(STAMP)

# torch is installed first and pinned (constraints.txt) so that nothing pulls the CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@echo "Setting up $(VENV) (pinned dependencies; the first time takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/dam demo

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check dam_pipeline dam_pipeline_tests

dev: setup
	@$(BIN)/dam init-home >/dev/null
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
