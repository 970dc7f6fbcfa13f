# tfkit: every target does its own set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LIB := tfkit/_tfkit_ops.so
BAZEL := tools/bazel.sh
# Bazel's disk cache: an action whose inputs and command are unchanged is
# taken from it, in this checkout (where the CPU variant and the CUDA build
# replace each other's outputs) and in every other clone. Bazel's action keys
# leave the compilers out, so each g++/nvcc release gets a folder of its own.
# `make BAZEL_DISK_CACHE=` builds without one.
NVCC_FOUND := $(or $(if $(CUDA_HOME),$(wildcard $(CUDA_HOME)/bin/nvcc)),$(if $(CUDA_PATH),$(wildcard $(CUDA_PATH)/bin/nvcc)),$(shell command -v nvcc),/usr/local/cuda/bin/nvcc)
TOOLCHAIN := $(shell { $${CC:-gcc} --version; $(NVCC_FOUND) --version; } 2>/dev/null | sha1sum | cut -c1-12)
BAZEL_DISK_CACHE ?= $(HOME)/.cache/tfkit/bazel-disk-cache/$(TOOLCHAIN)
BAZEL_FLAGS := --repo_env=PYTHON_BIN_PATH=$(CURDIR)/$(PY) $(if $(BAZEL_DISK_CACHE),--disk_cache=$(BAZEL_DISK_CACHE))
# pytest's worker processes (pytest-xdist; 0: none). Each test file runs on
# one worker (its module fixtures are made once), in collection order:
# tests/tools/conftest.py puts the slowest builds first.
TEST_JOBS ?= 2
PYTEST_PARALLEL := -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
# The tests' Bazel builds of copies of this tree use the same disk cache.
export TFKIT_BAZEL_DISK_CACHE := $(BAZEL_DISK_CACHE)

CPU_VARIANT := build/cpu/_tfkit_ops.so

.PHONY: setup build build-cpu cpu-variant test sanitize fuzz demo examples bench info clean

setup: $(VENV)/.editable
	@tools/setup_bazel.sh

# keras-hub is only the rotary family's test oracle: without its (tokenizer)
# dependencies, which tests/ops/keras_hub_rope.py does without.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps keras-hub==0.32.0
	touch $@

# tfkit itself, editable: `.venv/bin/python any_script.py` imports this
# checkout's tfkit from anywhere, and `.venv/bin/tfkit` is its command line.
$(VENV)/.editable: $(VENV)/.installed setup.py pyproject.toml
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The op library, with CUDA kernels when a CUDA toolkit is found.
build: setup
	$(BAZEL) build $(BAZEL_FLAGS) //cc:_tfkit_ops.so //cc:static_link_check
	install -m 0755 bazel-bin/cc/_tfkit_ops.so $(LIB)
	install -D -m 0755 bazel-bin/cc/static_link_check build/static_link_check

# The CPU-only library, even where CUDA is installed.
build-cpu: cpu-variant
	install -m 0755 $(CPU_VARIANT) $(LIB)

# The CPU-only variant kept aside in build/cpu, which the tests also load.
cpu-variant: setup
	$(BAZEL) build $(BAZEL_FLAGS) --repo_env=TFKIT_CUDA=0 //cc:_tfkit_ops.so
	install -D -m 0755 bazel-bin/cc/_tfkit_ops.so $(CPU_VARIANT)

# The tests marked serial run after the others, with nothing else running.
test: cpu-variant build
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "not serial" tests
	$(PY) -m pytest -q -m serial tests || [ $$? = 5 ]
	$(PY) tools/sanitize.py $(PYTEST_PARALLEL)

# tfkit's op library built with ASan + UBSan, and the op tests and the fuzz
# suite run against it (FUZZ_EXAMPLES=N cases per op, default 200).
sanitize: setup
	$(PY) tools/sanitize.py $(PYTEST_PARALLEL)

# The fuzz suite alone, against the library `make build` made.
fuzz: build
	$(PY) -m pytest -q tests/fuzz

demo: build
	$(PY) examples/digits_classifier.py
	@echo
	$(PY) examples/serve_digits.py
	@echo
	$(PY) examples/prototype_op.py

# The end-to-end examples in their full settings (a few minutes each on a
# 2-core CPU); outputs and pictures in build/examples/.
examples: build
	$(PY) examples/nlp_encoder.py
	$(PY) examples/vision_stn.py
	$(PY) examples/recsys_dlrm.py

bench: build
	for bench in benchmarks/bench_*.py; do $(PY) $$bench || exit 1; done

# Reads only: builds and installs nothing.
info:
	@test -x $(PY) || { echo "make info: no $(VENV) here; make setup (or make build) makes it" >&2; exit 2; }
	$(PY) -m tfkit info

clean:
	-$(BAZEL) clean
	rm -rf $(LIB) build
