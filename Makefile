# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One pytest process per core by default; `make test TEST_PROCESSES=0` runs the suite in this process.
TEST_PROCESSES ?= auto

.PHONY: install demo test lint protos check-protos buf-lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/jobwarden demo

test: install
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

lint: install check-protos buf-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

protos: install
	scripts/gen_protos.sh

check-protos: install
	scripts/gen_protos.sh --check

buf-lint:
	@if command -v npx >/dev/null; then cd protos && npx --yes @bufbuild/buf@1.75.0 lint; \
	else echo "buf lint skipped: npx (Node.js) is not installed"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
