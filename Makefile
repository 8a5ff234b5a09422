# Two entry points: `make demo` (the main job) and `make test` (what CI runs, with `make test-numerics` after it).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-numerics demo demo-quick bench clean

$(BIN)/lanfer: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all]"
	touch $(BIN)/lanfer

install: $(BIN)/lanfer

test: install
	$(BIN)/python -m pytest -q tests

# The numerics-heavy tests again on other kernels and thread counts than `make test` picks on this machine: a
# float computed by two kernels or split over other threads is never bit-equal in general, so a test that
# only passes with one CPU's kernels shows up here, on one machine (issue 19). Pass 1: every library's generic
# kernels (PyTorch's ATen, oneDNN's convolutions, OpenBLAS, numpy's SIMD loops), 1 thread on one core. Pass 2:
# kernels capped at AVX2 (a CPU without AVX-512, as many AMD EPYCs are), 2 threads. oneDNN needs its own cap:
# ATEN_CPU_CAPABILITY alone leaves the convolutions on the machine's best kernels. The caps only lower what
# the CPU has (pass 2 leaves OpenBLAS alone, as forcing a core type can ask for instructions the CPU lacks).
NUMERICS_TESTS := tests/test_guidance.py tests/test_cluster.py tests/test_guidance_distributed.py \
	tests/test_distributed.py tests/test_hostile_numerics.py tests/test_crash_resume.py tests/test_train.py \
	tests/test_precision.py tests/test_checkpoint.py tests/test_losses.py tests/test_backbones.py tests/test_dlib_backbone.py
ifeq ($(shell uname -m),x86_64)
GENERIC_KERNELS := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 OPENBLAS_CORETYPE=Nehalem \
	NPY_DISABLE_CPU_FEATURES=X86_V3,X86_V4,AVX512_ICL,AVX512_SPR
AVX2_KERNELS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 NPY_DISABLE_CPU_FEATURES=X86_V4,AVX512_ICL,AVX512_SPR
else
GENERIC_KERNELS := ATEN_CPU_CAPABILITY=default
AVX2_KERNELS :=
endif
# one core: the guidance fit's thread pool is sized by the cores it may use, not by OMP_NUM_THREADS
ONE_CORE = $(shell command -v taskset >/dev/null 2>&1 && \
	echo taskset -c $$($(BIN)/python -c "import os; print(min(os.sched_getaffinity(0)))"))

test-numerics: install
	$(GENERIC_KERNELS) OMP_NUM_THREADS=1 $(ONE_CORE) $(BIN)/python -m pytest -q $(NUMERICS_TESTS)
	$(AVX2_KERNELS) OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q $(NUMERICS_TESTS)

demo: install
	$(BIN)/lanfer demo --out runs/demo

demo-quick: install
	$(BIN)/lanfer demo --quick --out runs/demo-quick

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
