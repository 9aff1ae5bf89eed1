# `make demo` and `make test` create .venv with the pinned stack first when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	# torch first, from its own pin, so nothing else can pull a CUDA build
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m spikevae.demo

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/spiking.py
	$(PY) benchmarks/lca.py
	$(PY) benchmarks/rf_mapping.py
	$(PY) benchmarks/sweep.py

clean:
	rm -rf $(VENV) build *.egg-info
