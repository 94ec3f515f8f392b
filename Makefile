# Cloister developer commands. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run examples test lint unit e2e faults bench proto docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,vision]"
	@# pip compiles what it installs, but not an editable checkout: with PYTHONDONTWRITEBYTECODE
	@# set, every service start (and restart) would compile the whole package again.
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

install: $(STAMP)

## Start all seven services in the foreground (Ctrl-C stops them). ARGS="--state-dir DIR" to choose state.
## First the system packages the task sandbox needs: installed when missing as root, else the
## command that installs them is printed and nothing starts (scripts/system_packages.py).
## For development, tasks' URLs may reach loopback, where Teaclave's examples serve their files; a
## CLOISTER_EXECUTION__ALLOWED_NETWORKS of your own (empty: none) replaces that.
DEV_ALLOWED_NETWORKS := 127.0.0.0/8,::1/128
run: $(STAMP)
	@$(PYTHON) scripts/system_packages.py
	CLOISTER_EXECUTION__ALLOWED_NETWORKS="$${CLOISTER_EXECUTION__ALLOWED_NETWORKS-$(DEV_ALLOWED_NETWORKS)}" \
		$(BIN)/cloister up $(ARGS)

## Every example (examples/builtins, examples/wasm), each playing all its parties, against the platform
## `make run` started in another terminal; ARGS="--state-dir DIR" as given to `make run`. Stops at the
## first example that fails.
EXAMPLES = $(sort $(filter-out examples/builtins/_%,$(wildcard examples/builtins/*.py)) $(wildcard examples/wasm/*.py))
examples: $(STAMP)
	@set -e; for example in $(EXAMPLES); do $(BIN)/python $$example $(ARGS); done

## Lint and run the whole test suite.
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/ruff format --check src tests benchmarks scripts examples
	$(BIN)/python scripts/gen_proto.py --check
	$(BIN)/python scripts/mypy_ratchet.py

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

## The fault suite at length: each fault three times, with 10 s of load before and after each
## (`make test` runs it once, with 3 s).
faults: $(STAMP)
	CLOISTER_FAULT_ROUNDS=3 CLOISTER_FAULT_SECONDS=10 $(BIN)/python -m pytest tests/e2e/test_faults.py $(PYTEST_ARGS)

## Latency, throughput and memory, each printed against a baseline measured in the same run; bytes of state per task.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.task_latency
	$(BIN)/python -m benchmarks.task_timeline
	$(BIN)/python -m benchmarks.task_floor
	$(BIN)/python -m benchmarks.crypto_throughput
	$(BIN)/python -m benchmarks.data_plane_memory
	$(BIN)/python -m benchmarks.builtin_overhead
	$(BIN)/python -m benchmarks.access_decisions
	$(BIN)/python -m benchmarks.state_growth
	$(BIN)/python -m benchmarks.recovery
	$(BIN)/python -m benchmarks.audit_query
	$(BIN)/python -m benchmarks.storage_engines

## The documentation site, with the API reference generated from the docstrings, into site/.
## --strict: a broken link, a missing page or a docstring the renderer cannot read fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

## Regenerate src/cloister/_proto from proto/*.proto.
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
