# Entry points: `make quickstart`, `make test` (the whole suite, what CI runs) and `make check`
# (the fast tier: no Ray, no deep nets). Each creates .venv with pip when it is
# missing; installing is skipped when pyproject.toml has not changed since the last install.
# Another interpreter: `make PYTHON=python3.12 quickstart` (3.10 or newer).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test check lint install clean-venv

# Before anything is installed, one line that names what is missing: the interpreter, a
# recent enough one, or the venv module's pip bootstrap (a separate package on Debian/Ubuntu).
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: no $(PYTHON) on PATH: install Python 3.10 or newer, or name one with make PYTHON=/path/to/python3"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: resnetctl needs Python 3.10 or newer and $(PYTHON) is $$($(PYTHON) -c 'import platform; print(platform.python_version())'): install one and run make PYTHON=python3.X ..."; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "error: $(PYTHON) cannot create a venv (no ensurepip): on Debian/Ubuntu, sudo apt install $$($(PYTHON) -c 'import sys; print("python3.%d-venv" % sys.version_info[1])') (or python3-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/resnetctl submit jobs/quickstart.yaml

# The fast tier spread over one process per core (pytest-xdist), then the slow tier in one
# process: its tests start Ray clusters and time faults, and must not share the cores (two
# processes: 38 min instead of 47, cores 95 % busy; docs/benchmarks.md "The test suite").
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto --durations=10
	$(BIN)/python -m pytest -q -m "slow or last" --durations=15

# The fast tier for contributors: every test that starts no Ray and trains no deep net.
check: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto --durations=10

lint: $(STAMP)
	$(BIN)/ruff check platform tests benchmarks

clean-venv:
	rm -rf $(VENV)
