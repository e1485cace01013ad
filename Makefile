# Keel: `make run` trains on the bundled sample, `make test` runs every test. `make help` lists all.
PYTHON ?= python3
VENV ?= .venv
STORE ?= .keel
BIN := $(VENV)/bin
READY := $(VENV)/.ready
MLFLOW_VENV := .venv-mlflow
MLFLOW_READY := $(MLFLOW_VENV)/.ready
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
CONTAINERS_CONF ?= $(abspath images/containers.conf)
ENV ?= dev
DRY_RUN ?=
CLUSTER_ARGS ?=
CLUSTER_FLAGS = --env manifests/env/$(ENV).yaml $(if $(filter 1,$(DRY_RUN)),--dry-run) $(CLUSTER_ARGS)
.PHONY: help venv run test lint system-deps mlflow-venv compile images container-deps test-containers \
	upload submit schedule lock bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(READY): pyproject.toml requirements.lock requirements-test.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Keel needs Python 3.11 (python3.11 with venv): set PYTHON=..."; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "Install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install --quiet --disable-pip-version-check pip==26.3
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-test.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(READY) ## Create .venv with keel and the test tools installed

run: $(READY) ## Train on the bundled sample (data/credit.csv) into ./.keel and print the summary
	$(BIN)/keel run --source data/credit.csv --target Status --store $(STORE)

test: system-deps mlflow-venv lint ## Run lint and the whole test suite (starts its own GCS emulator)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

lint: $(READY) ## ruff, mypy --strict on keel/, hadolint on the Dockerfiles, manifests rendered and schema-checked offline
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint --failure-threshold style images/base/Dockerfile images/stage/Dockerfile
	$(BIN)/python manifests/validate.py

system-deps: ## Install chromium and postgresql (Debian) for the tests when missing (apt-get, as root)
	@scripts/debian-packages.sh "for the browser and database tests" chromium fonts-dejavu-core postgresql
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is still not on PATH after installing it"; exit 1; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "PostgreSQL's initdb is still missing after installing postgresql"; exit 1; }

# Full mlflow (the tracking server the MLflow mirror tests start) needs pyarrow < 26: its own venv.
$(MLFLOW_READY): requirements-mlflow.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Keel needs Python 3.11 (python3.11 with venv): set PYTHON=..."; exit 1; }
	@$(PYTHON) -m venv $(MLFLOW_VENV) || { echo "Install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(MLFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check pip==26.3
	$(MLFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-mlflow.lock
	@touch $@

mlflow-venv: $(MLFLOW_READY) ## Create .venv-mlflow with the MLflow server the mirror tests run

bench: $(READY) ## Benchmarks, never part of make test: keel run vs a plain script, stages vs their floor, statistics' memory
	$(BIN)/python benchmarks/pipeline.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/stages.py
	$(BIN)/python benchmarks/statistics_memory.py

compile: $(READY) ## Regenerate pipelines/compiled/*.yaml (training, batch prediction) and components/README.md
	$(BIN)/keel compile

container-deps: ## Install podman, buildah, runc and debootstrap (Debian) when missing (apt-get, as root)
	@scripts/debian-packages.sh "to build and run Keel's images" podman buildah runc debootstrap

images: $(READY) container-deps ## Build the base and every image with podman, on a local Debian base (images/README.md)
	images/debian-base.sh
	CONTAINERS_CONF=$(CONTAINERS_CONF) PYTHON=$(abspath $(BIN))/python images/build.sh

test-containers: system-deps images ## Build the images, then run the pipeline with every stage in its own image
	CONTAINERS_CONF=$(CONTAINERS_CONF) $(BIN)/pytest -m containers -n 2 tests/test_containers.py $(PYTEST_ARGS)

upload: $(READY) ## Compile the training pipeline for ENV (dev) and upload it as a new pipeline version (DRY_RUN=1: only print the request)
	$(BIN)/keel cluster upload $(CLUSTER_FLAGS)

submit: $(READY) ## Start one training run on ENV (dev) with the newest uploaded version (DRY_RUN=1: only print the request)
	$(BIN)/keel cluster submit $(CLUSTER_FLAGS)

schedule: $(READY) ## Create ENV's (dev) weekly recurring run of the newest uploaded version (DRY_RUN=1: only print the request)
	$(BIN)/keel cluster schedule $(CLUSTER_FLAGS)

lock: ## Re-pin requirements.lock (runtime) and requirements-test.lock from pyproject.toml
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet .
	( echo '# Runtime packages of keel, pinned with everything they pull in: what the stage images install.'; \
	  echo '# Regenerate with `make lock`.'; \
	  $(VENV)-lock/bin/pip freeze | grep -v '^keel' ) > requirements.lock
	$(VENV)-lock/bin/pip install --quiet '.[test]'
	( echo '# Test and lint tools, pinned with what they pull in (on top of requirements.lock).'; \
	  echo '# Regenerate with `make lock`.'; \
	  $(VENV)-lock/bin/pip freeze | grep -v '^keel' | grep -vxF -f requirements.lock ) > requirements-test.lock
	$(VENV)-lock/bin/python images/lock.py
	rm -rf $(VENV)-lock

clean: ## Remove .venv, .venv-mlflow and the local store
	rm -rf $(VENV) $(MLFLOW_VENV) $(STORE)
