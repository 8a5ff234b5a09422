# Two entry points: `make demo` (the main job) and `make test` (what CI runs).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo demo-quick bench clean

$(BIN)/lanfer: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all]"
	touch $(BIN)/lanfer

install: $(BIN)/lanfer

test: install
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/lanfer demo --out runs/demo

demo-quick: install
	$(BIN)/lanfer demo --quick --out runs/demo-quick

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
