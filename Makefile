# Two commands from a fresh clone: `make demo` and `make test`.  Everything else is installed from
# this repository's own files: a .venv (pip, from pyproject.toml) and anvil (npm, pinned 1.7.1).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install anvil demo test lint format bench clean

help:
	@echo "make demo    pay for a chat completion on a local Tempo devnet (installs what it needs)"
	@echo "make test    run the whole test suite (unit, devnet integration, interop)"
	@echo "make lint    ruff + mypy"
	@echo "make bench   run bench/*.py and write bench/REPORT.md"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

anvil: $(STAMP)
	@$(PY) -m mpp_claude.cli devnet --install

demo: install anvil
	@$(PY) -m mpp_claude.demo $(DEMO_ARGS)

test: install anvil
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check mpp_claude tests bench examples
	$(PY) -m mypy mpp_claude

format: install
	$(PY) -m ruff check --fix mpp_claude tests bench examples

bench: install anvil
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache .hypothesis
