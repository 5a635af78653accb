# The whole project from a fresh machine: `make run` or `make test` set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test test-fast chaos bench lint schemas stack-up stack-down clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock deploy/kafka/pom.xml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/mediation stack jars
	@touch $(STAMP)

stack-up: install
	$(BIN)/mediation stack up

stack-down:
	@if [ -x $(BIN)/mediation ]; then $(BIN)/mediation stack down; fi

# Starts the stack if needed, and stops it afterwards only if this target started it.
test: install
	@was_up=$$($(BIN)/mediation stack status --quiet && echo 1); \
	if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(BIN)/mediation stack up >/dev/null || exit 2; fi; \
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ -z "$$was_up" ] && [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(BIN)/mediation stack down; fi; \
	exit $$rc

# The same, for the chaos test (it kills and restarts the local broker and database).
chaos: install
	@was_up=$$($(BIN)/mediation stack status --quiet && echo 1); \
	$(BIN)/mediation stack up >/dev/null || exit 2; \
	$(BIN)/pytest -m chaos tests/system -s; rc=$$?; \
	if [ -z "$$was_up" ] && [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(BIN)/mediation stack down; fi; \
	exit $$rc

run: install
	$(BIN)/mediation run

bench: install
	@was_up=$$($(BIN)/mediation stack status --quiet && echo 1); \
	$(BIN)/mediation stack up >/dev/null || exit 2; \
	$(BIN)/python -m bench; rc=$$?; \
	if [ -z "$$was_up" ] && [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(BIN)/mediation stack down; fi; \
	exit $$rc

lint: install
	$(BIN)/ruff check libs services tests bench
	$(BIN)/mypy libs/schemas/mediation_schemas libs/core/mediation_core

schemas: install
	$(BIN)/mediation schemas --out contracts

clean: stack-down
	rm -rf $(VENV) .stack
