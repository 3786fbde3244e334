# rls-cds — every target creates what it needs; nothing is assumed installed.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
FHIRVENV:= .venv-fhir
STAMP   := $(VENV)/.installed
RUNSTAMP:= $(VENV)/.installed-run
FHIRSTAMP := $(FHIRVENV)/.installed

.PHONY: install run test lint format bench clean

# `make run` needs the service only; tests and benchmarks add the test extras on top.
$(RUNSTAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUNSTAMP)

$(STAMP): $(RUNSTAMP)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# The test FHIR server lives in its own venv so its pins never constrain ours.
$(FHIRSTAMP):
	$(PY) -m venv $(FHIRVENV)
	$(FHIRVENV)/bin/pip install -q 'sekmet-fhir==0.1.1'
	touch $(FHIRSTAMP)

install: $(STAMP)

## run: install and serve the hooks with embedded defaults (development mode, loopback only)
run: $(RUNSTAMP)
	$(BIN)/rls-cds serve --dev

## test: install everything and run lint + the whole test suite
test: $(STAMP) $(FHIRSTAMP)
	./scripts/install-system-deps.sh
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	RLS_FHIR_SERVER_BIN=$(CURDIR)/$(FHIRVENV)/bin/sekmet $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

## bench: latency and batch benchmarks (not part of pass/fail)
bench: $(STAMP) $(FHIRSTAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(FHIRVENV) .pytest_cache
