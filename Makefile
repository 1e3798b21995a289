# `make test` is what CI runs (.ci/run). `make demo` runs the app through the real Functions Python worker
# against the bundled emulator: no Azure needed. `make serve` keeps it serving on http://localhost:7071.
PYTHON ?= python3
# Python 3.13 is the deployment target and the only version the v1 worker library supports.
# A python3.13 that runs (a pyenv shim may exist without the version selected), else pyenv's own copy.
PYTHON313 ?= $(or $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null),$(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13))))
VENV ?= .venv
VENV313 ?= .venv313
VENVCHECKOV ?= .venv-checkov
VENVBENCH ?= .venv-bench
# The local host's port (make demo / make serve); pick another when 7071 is taken: make demo PORT=7072.
PORT ?= 7071
# make demo TENANTS=3: many tenants, through the emulator's Entra stand-in, on Azurite's queue (README, 'Many tenants').
TENANTS ?= 0
BIN := $(VENV)/bin
BIN313 := $(VENV313)/bin

.PHONY: help venv azurite chromium test lint checkov package demo serve emulator benchmark benchmark-devices benchmark-tenants load-test clean

help: ## list the targets (this is what plain `make` does)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {name[++n] = $$1; help[n] = $$2; if (length($$1) > w) w = length($$1)} \
		END {for (i = 1; i <= n; i++) printf "  make %-*s  %s\n", w, name[i], help[i]}' $(MAKEFILE_LIST)

# The environments are made by uv (pinned, itself installed with pip once into .venv-tools): it installs what
# pip does in a tenth of the time, which is most of a clean clone's `make test`. Libraries are compiled to
# bytecode at install, as pip does, since the suite starts many interpreters.
UV_VERSION ?= 0.13.9
VENVTOOLS ?= .venv-tools
UV := $(VENVTOOLS)/bin/uv
UV_INSTALL := $(UV) pip install --quiet --compile-bytecode

$(UV):
	$(PYTHON) -m venv $(VENVTOOLS)
	$(VENVTOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(BIN)/.installed: requirements.txt requirements-dev.txt | $(UV)
	$(UV) venv --quiet --seed --allow-existing --python $(PYTHON) $(VENV)
	$(UV_INSTALL) --python $(BIN)/python -r requirements-dev.txt
	touch $@

$(BIN313)/.installed: requirements.txt requirements-dev.txt | $(UV)
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or set PYTHON313=/path/to/python3.13"; exit 1; }
	$(UV) venv --quiet --seed --allow-existing --python $(PYTHON313) $(VENV313)
	$(UV_INSTALL) --python $(BIN313)/python -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed ## create .venv with the app's packages, for .venv/bin/python -m shared

# Azurite, the Storage emulator (queues and tables), pinned by tests/azurite/package-lock.json: npm ci installs
# exactly that tree into tests/azurite/node_modules. The worker-level queue tests and `make demo TENANTS=N` use it.
AZURITE_DIR := tests/azurite
AZURITE := $(AZURITE_DIR)/node_modules/.installed
$(AZURITE): $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "Azurite needs Node.js 18 or later with npm (apt install nodejs npm)"; exit 1; }
	npm ci --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

azurite: $(AZURITE) ## install Azurite (the Storage emulator) into tests/azurite

# Debian's chromium, for the status page's browser test: installed where it is missing and this is root with apt
# (CI); elsewhere that one test says how to install it and is skipped. Never fails the build by itself.
chromium: ## install Debian's chromium for the browser test, where it is missing (as root, with apt)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; } \
		&& echo "Installed chromium (apt)"; } || echo "chromium is not installed: the browser test will be skipped (apt-get install chromium)"

# checkov has many pinned dependencies of its own, so it gets its own environment. It pins pycep-parser 0.5.1,
# which predates Bicep's `extension` keyword (infra/graph-permission.bicep); 0.7.1 reads it.
$(VENVCHECKOV)/bin/.installed: | $(UV)
	@echo "Installing checkov into $(VENVCHECKOV) (once)..."
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENVCHECKOV)
	$(UV) pip install --quiet --python $(VENVCHECKOV)/bin/python checkov==3.3.30
	$(UV) pip install --quiet --python $(VENVCHECKOV)/bin/python --no-deps pycep-parser==0.7.1
	touch $@

checkov: $(VENVCHECKOV)/bin/.installed ## scan infra/ with checkov
	$(VENVCHECKOV)/bin/checkov --config-file .checkov.yaml

lint: $(BIN)/.installed ## ruff (lint and format check) and mypy (shared/, strict)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# What CI runs. The two test environments install side by side; then lint, and checkov (installing itself)
# beside the whole suite on the machine's python3 and on 3.13 (where the worker-level tests also run), each pass
# spread over workers (pytest-xdist: most tests wait on sockets). The 3.13 pass streams; checkov's and the
# python3 pass's output follow when all have ended. Any of them failing fails the target.
TEST_WORKERS ?= 3
# The suite starts many interpreters (workers, the CLI, the local host): let them cache the app's bytecode in
# __pycache__/ (ignored by git) even where the environment says not to.
test: export PYTHONDONTWRITEBYTECODE =
test: ## what CI runs: lint, checkov, the suite on python3 and on 3.13
	@$(MAKE) --no-print-directory $(UV)
	@$(MAKE) --no-print-directory -j4 $(BIN)/.installed $(BIN313)/.installed $(AZURITE) chromium
	@$(MAKE) --no-print-directory lint
	@echo "checkov, and the suite on $$($(BIN)/python -V) and on $$($(BIN313)/python -V), side by side..."
	@logs=$$(mktemp -d); \
	$(MAKE) --no-print-directory checkov > $$logs/checkov 2>&1 & checkov=$$!; \
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) > $$logs/python3 2>&1 & first=$$!; \
	$(BIN313)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS); second=$$?; \
	wait $$checkov; checkov=$$?; wait $$first; first=$$?; \
	echo "== checkov:"; cat $$logs/checkov; echo "== the pass on $$($(BIN)/python -V):"; cat $$logs/python3; \
	rm -rf $$logs; \
	test $$checkov -eq 0 -a $$first -eq 0 -a $$second -eq 0

demo: $(BIN313)/.installed $(AZURITE) ## the app in the real Functions worker against the emulator, once (PORT=7071, TENANTS=3)
	$(BIN313)/python scripts/local_host.py --once --port $(PORT) --tenants $(TENANTS)

serve: $(BIN313)/.installed $(AZURITE) ## keep that local host serving on http://localhost:7071 (PORT=...)
	$(BIN313)/python scripts/local_host.py --port $(PORT) --tenants $(TENANTS)

# Not part of `make test`. Each prints its figures and exits 1 when a target is missed; with RECORD=1, a run that
# met its targets also writes them into benchmarks/README.md (and the summary into README.md).
RECORD ?=
RECORDING := $(if $(RECORD),--write-readme)
$(VENVBENCH)/bin/.installed: requirements.txt requirements-dev.txt benchmarks/requirements.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or set PYTHON313=/path/to/python3.13"; exit 1; }
	$(PYTHON313) -m venv $(VENVBENCH)
	$(VENVBENCH)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt
	touch $@

benchmark: $(VENVBENCH)/bin/.installed ## speed and memory against the targets (RECORD=1 writes benchmarks/README.md)
	$(VENVBENCH)/bin/python benchmarks/benchmark.py $(RECORDING)

benchmark-devices: $(BIN313)/.installed ## stale devices at 1k/10k/100k and 1,000 paced syncs (RECORD=1)
	$(BIN313)/python benchmarks/devices.py $(RECORDING)

benchmark-tenants: $(BIN313)/.installed $(AZURITE) ## 6 tenants vs 1, then 1,000 tenants on the queue with 1, 2, 4 consumers (RECORD=1)
	$(BIN313)/python benchmarks/tenants.py $(RECORDING)

load-test: $(BIN313)/.installed ## 5,000 webhook requests through the worker (RECORD=1)
	$(BIN313)/python benchmarks/load_test.py $(RECORDING)

emulator: $(BIN)/.installed ## run the Graph + identity emulator alone; prints settings to paste
	$(BIN)/python -m tests.emulator

package: $(BIN313)/.installed ## the deployment package, with the app's bytecode for 3.13: dist/package, dist/sync.zip
	$(BIN313)/python scripts/package.py

clean: ## remove every environment and cache the other targets made
	rm -rf dist $(VENV) $(VENV313) $(VENVCHECKOV) $(VENVBENCH) $(VENVTOOLS) $(AZURITE_DIR)/node_modules .pytest_cache .ruff_cache .mypy_cache .hypothesis
