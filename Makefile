# `make test` is what CI runs (.ci/run); `make demo` syncs against the bundled emulator, no Azure needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint demo emulator clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py

emulator: $(BIN)/.installed
	$(BIN)/python -m tests.emulator

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
