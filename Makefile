# Keel: `make run` trains on the bundled sample, `make test` runs every test. `make help` lists all.
PYTHON ?= python3
VENV ?= .venv
STORE ?= .keel
BIN := $(VENV)/bin
READY := $(VENV)/.ready
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint compile lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(READY): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "Keel needs Python 3.11 (python3.11 with venv): set PYTHON=..."; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "Install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install --quiet --disable-pip-version-check pip==26.3
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(READY) ## Create .venv with keel and the test tools installed

run: $(READY) ## Train on the bundled sample (data/credit.csv) into ./.keel and print the summary
	$(BIN)/keel run --source data/credit.csv --target Status --store $(STORE)

test: $(READY) ## Run lint and the whole test suite (starts its own GCS emulator)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

lint: $(READY) ## ruff check and format check
	$(BIN)/ruff check .

compile: $(READY) ## Regenerate pipelines/compiled/training.yaml
	$(BIN)/keel compile

lock: $(READY) ## Re-pin requirements.lock from the current environment
	( echo '# Every package of the development environment, pinned (make lock regenerates it).'; \
	  $(BIN)/pip freeze --exclude-editable ) > requirements.lock

clean: ## Remove .venv and the local store
	rm -rf $(VENV) $(STORE)
