# K2 developer entry points. Each target creates the virtualenv on first use, so a fresh clone needs
# only the machine's Python 3.11+, Java 17+ and Maven.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The packages install as k2.* (see pyproject.toml); mypy resolves k2.* imports through this view of
# the folders, else it would see every cross-package import as Any.
MYPY_SRC := $(VENV)/mypy-src
PACKAGES := cli connect ksql producer query schemas stack
MYPY   := MYPYPATH=$(MYPY_SRC) $(BIN)/mypy -p k2 && MYPYPATH=$(MYPY_SRC) $(BIN)/mypy tests benchmarks

.PHONY: demo test lint unit integration stack-up stack-down install ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(MYPY_SRC)/k2/__init__.py: | $(STAMP)
	mkdir -p $(MYPY_SRC)/k2
	for package in $(PACKAGES); do ln -sfn ../../../$$package $(MYPY_SRC)/k2/$$package; done
	touch $@

install: $(STAMP)

## Optional: kaskade, the terminal UI behind `k2 kafka-ui`.
ui: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,ui]'

## The main job, end to end on the local stack (starts the stack if needed).
demo: $(STAMP)
	$(BIN)/k2 run --standin

## Lint, type-check and every test (integration tests start their own stack in .k2-test/).
test: $(STAMP) $(MYPY_SRC)/k2/__init__.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MYPY)
	$(BIN)/k2 ksql validate
	$(BIN)/pytest

lint: $(STAMP) $(MYPY_SRC)/k2/__init__.py
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(MYPY)

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
