# Two commands for a fresh machine: `make train` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all setup train test test-slow lint bench bench-mpi accuracy speedrun clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the default preset (the seed's two-layer network) on MNIST.
# Extra arguments go through ARGS, e.g. make train ARGS="--set train.epochs=3".
train: $(STAMP)
	$(BIN)/bptrain train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/speed.py $(ARGS)
	$(BIN)/python benchmarks/report.py

# Data-parallel epochs on MPI: 1 process x 2 threads against mpiexec -n 1 and -n 2.
bench-mpi: $(STAMP)
	$(BIN)/python benchmarks/mpi.py $(ARGS)

accuracy: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py $(ARGS)
	$(BIN)/python benchmarks/report.py

# The speedrun claim: seeds 0-4 of `bptrain train speedrun`, one after the other, one thread.
speedrun: $(STAMP)
	$(BIN)/python benchmarks/speedrun.py $(ARGS)
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
