# Entry points: `make quickstart`, `make test` (the whole suite, what CI runs) and `make check`
# (the fast tier: no Ray, no deep nets). Each creates .venv with pip when it is
# missing; installing is skipped when pyproject.toml has not changed since the last install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test check lint install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/resnetctl submit jobs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# The fast tier for contributors: every test that starts no Ray and trains no deep net.
check: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" --durations=10

lint: $(STAMP)
	$(BIN)/ruff check platform tests benchmarks

clean-venv:
	rm -rf $(VENV)
