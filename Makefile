# Health Hotline: the two commands are `make demo` (run it) and `make test` (test it).
# Both create the virtual environment in .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export TEST_PG_URL

PRISM_VERSION := 5.14.2
PRISM := .ci/node/node_modules/.bin/prism

.PHONY: demo test lint test-sqlite test-postgresql bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# Prism serves Twilio's OpenAPI spec for the contract tests (tests/contract). Installed into
# .ci/node when npm is there; without it those tests fail and name the install command.
$(PRISM):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix .ci/node --no-audit --no-fund --loglevel=error \
			@stoplight/prism-cli@$(PRISM_VERSION); \
	else \
		echo "npm not found: install Node.js (>= 18.20) and npm for the Twilio contract tests"; \
	fi

## Run the hotline locally: SQLite, demo data, web app on http://localhost:8000
demo: $(STAMP)
	$(BIN)/callcenter demo

## Everything CI checks: lint, types, layer contracts, tests on SQLite and PostgreSQL
## (the two databases' runs go side by side, each with its own output)
test: lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgresql

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-sqlite: $(STAMP) | $(PRISM)
	TEST_DATABASE=sqlite $(BIN)/pytest -q -p no:cacheprovider

test-postgresql: $(STAMP) | $(PRISM)
	TEST_DATABASE=postgresql $(BIN)/pytest -q -p no:cacheprovider

## Benchmarks (print figures; see bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/webhook.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
