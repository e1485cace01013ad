# Keel: `make run` trains on the bundled sample, `make test` runs every test. `make help` lists all.
PYTHON ?= python3
VENV ?= .venv
STORE ?= .keel
BIN := $(VENV)/bin
READY := $(VENV)/.ready
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint compile images lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

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

test: lint ## Run lint and the whole test suite (starts its own GCS emulator)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

lint: $(READY) ## ruff (style, imports, docstrings, no kfp in stage logic) and mypy --strict on keel/
	$(BIN)/ruff check .
	$(BIN)/mypy

compile: $(READY) ## Regenerate pipelines/compiled/training.yaml and components/README.md
	$(BIN)/keel compile

images: $(READY) ## Build the base and stage images with podman (see images/README.md)
	PYTHON=$(abspath $(BIN))/python images/build.sh

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
	rm -rf $(VENV)-lock

clean: ## Remove .venv and the local store
	rm -rf $(VENV) $(STORE)
