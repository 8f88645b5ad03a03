# Two commands do all the set-up on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One torch thread per process: on 2 shared cores, OpenMP threads spinning against other jobs made
# small-model training 10x slower; set OMP_NUM_THREADS yourself on a bigger, quiet machine.
export OMP_NUM_THREADS ?= 1

.PHONY: install quickstart test test-fast clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,tensorboard]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/gamer-hf quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x tests -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
