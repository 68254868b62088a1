# On a fresh machine, two commands do all the set-up:
#   make demo   builds .venv when missing, runs the line study, prints its headline
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch. Asked for first and exactly: an open range would pull a
# multi-GB CUDA build, and setup.py's `torch>=2.4` is then already satisfied.
TORCH ?= torch==2.13.0

.PHONY: demo test bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tinysweep run examples/line_batch_size.yaml --overwrite

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) runs *.egg-info .pytest_cache
