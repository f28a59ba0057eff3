# `make train` and `make test` set everything up on first use: a .venv with the project installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install train test test-slow lint summary clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

train: install  ## train with the default config; pass overrides as ARGS="experiment=modern"
	$(BIN)/python -m lenet_pl.train $(ARGS)

summary: install  ## LeNet-5's layer table for ARGS
	$(BIN)/python -m lenet_pl.summary $(ARGS)

test: install  ## the default test suite (minutes on 2 cores)
	$(BIN)/python -m pytest $(ARGS)

test-slow: install  ## the long tests too (full trainings on real MNIST)
	$(BIN)/python -m pytest -m "slow or not slow" $(ARGS)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
