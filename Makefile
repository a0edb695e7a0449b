# Health Hotline: the two commands are `make demo` (run it) and `make test` (test it).
# Both create the virtual environment in .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export TEST_PG_URL

.PHONY: demo test lint test-sqlite test-postgresql bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

## Run the hotline locally: SQLite, demo data, web app on http://localhost:8000
demo: $(STAMP)
	$(BIN)/callcenter demo

## Everything CI checks: lint, types, layer contracts, tests on SQLite and PostgreSQL
test: lint test-sqlite test-postgresql

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-sqlite: $(STAMP)
	TEST_DATABASE=sqlite $(BIN)/pytest -q

test-postgresql: $(STAMP)
	TEST_DATABASE=postgresql $(BIN)/pytest -q

## Benchmarks (print figures; see bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/webhook.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
