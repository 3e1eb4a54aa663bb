# Quick start: `make demo` runs the demo, `make test` runs every test.
# Both create ./.venv and install the project into it on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench conformance clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ocpp-gateway demo $(ARGS)

test: $(STAMP)
	bash tools/test-servers.sh
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/ocpp-gateway bench $(ARGS)

conformance: $(STAMP)
	$(BIN)/ocpp-gateway conformance --markdown > docs/conformance.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
