# `make train` and `make test` set everything up on first use: a .venv with the project installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install train test test-slow lint summary clean

install: $(VENV)/.installed

# Every extra of pyproject.toml (optuna, onnx, slurm: the tests use them all) and the dev tools.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[all,dev]'
	touch $@

train: install  ## train with the default config; pass overrides as ARGS="experiment=modern"
	$(BIN)/python -m lenet_pl.train $(ARGS)

summary: install  ## LeNet-5's layer table for ARGS
	$(BIN)/python -m lenet_pl.summary $(ARGS)

# One pytest worker per core (pytest-xdist); a test module's tests stay on one worker, so a module's
# shared runs are made once. TEST_WORKERS=0 runs in this process (for pdb, or one test).
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

test: install  ## the default test suite (minutes on 2 cores)
	$(PYTEST) $(ARGS)

test-slow: install  ## the long tests too (full trainings on real MNIST)
	$(PYTEST) -m "slow or not slow" $(ARGS)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
