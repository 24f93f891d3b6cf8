# K2 developer entry points. Each target creates the virtualenv on first use, so a fresh clone needs
# only the machine's Python 3.11+, Java 17+ and Maven.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration stack-up stack-down install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job, end to end on the local stack (starts the stack if needed).
demo: $(STAMP)
	$(BIN)/k2 run --standin

## Lint, type-check and every test (integration tests start their own stack in .k2-test/).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy cli connect ksql producer query schemas stack tests benchmarks
	$(BIN)/k2 ksql validate
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy cli connect ksql producer query schemas stack tests benchmarks

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest -m integration

stack-up: $(STAMP)
	$(BIN)/k2 stack up

stack-down: $(STAMP)
	$(BIN)/k2 stack down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
