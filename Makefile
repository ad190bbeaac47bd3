# TransferScope: `make demo` runs the pipeline end to end, `make test` runs lint + type checks + tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PEERS := .venv-peers
TORCH_SPEC := torch==2.13.0
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint bench peers gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/transferscope demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# One pytest worker per core, each file on one worker (its module fixtures built once); conftest gives each worker
# one torch thread.
test: lint
	$(PY) -m pytest -q -n auto --dist loadfile --durations=25

$(PEERS)/.installed: bench/peers-requirements.txt
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(PEERS)/bin/python -m pip install -q -r bench/peers-requirements.txt
	touch $@

peers: $(PEERS)/.installed

bench: setup peers
	$(PY) -m bench all

# The GPU-path check (bench/gpu.py): on CUDA, < 8 min on one H100; without CUDA, its CPU fallback in < 2 min.
gpu-check: setup
	$(PY) -m bench gpu

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .mypy_cache .ruff_cache
