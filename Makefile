# `make test` works on a fresh machine with only Python 3.10+ and make: it creates .venv unless a
# virtual environment is already active, installs the project with its dev extra, and runs pytest.
# torch: where none is installed, the CPU build named by TORCH_SPEC is installed first (light, and on
# this project's CPU machines it comes from the local disk); a GPU user's existing torch is kept.

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.diffbinaural-installed

.PHONY: install test test-fast lint demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml requirements.txt
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check DiffBinaural BigVGAN tests bench binauralize.py

clean:
	rm -rf .venv .pytest_cache build *.egg-info
