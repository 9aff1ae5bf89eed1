# `make demo` and `make test` create .venv with the pinned stack first when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench venv docs clean

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

# the everyday suite, one worker per core (at most 4); `make test-all` adds the slow tests
test: $(STAMP)
	$(PY) -m pytest -n auto --maxprocesses 4

test-all: $(STAMP)
	$(PY) -m pytest -n auto --maxprocesses 4 -m ""

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/spiking.py
	$(PY) benchmarks/lca.py
	$(PY) benchmarks/rf_mapping.py
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/simulate_startup.py

DOCSTAMP := $(VENV)/.docs-installed

$(DOCSTAMP): $(STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,docs]"
	touch $(DOCSTAMP)

# the site: workflow pages, API reference, and the gallery, executed; every warning is an error
docs: $(DOCSTAMP)
	MPLBACKEND=Agg $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/auto_examples
