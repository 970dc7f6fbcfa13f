# tfkit: every target does its own set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LIB := tfkit/_tfkit_ops.so
BAZEL := tools/bazel.sh
BAZEL_FLAGS := --repo_env=PYTHON_BIN_PATH=$(CURDIR)/$(PY)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

CPU_VARIANT := build/cpu/_tfkit_ops.so

.PHONY: setup build build-cpu cpu-variant test sanitize demo bench info clean

setup: $(VENV)/.installed
	@tools/setup_bazel.sh

# keras-hub is only the rotary family's test oracle: without its (tokenizer)
# dependencies, which tests/ops/keras_hub_rope.py does without.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps keras-hub==0.32.0
	touch $@

# The op library, with CUDA kernels when a CUDA toolkit is found.
build: setup
	$(BAZEL) build $(BAZEL_FLAGS) //cc:_tfkit_ops.so
	install -m 0755 bazel-bin/cc/_tfkit_ops.so $(LIB)

# The CPU-only library, even where CUDA is installed.
build-cpu: cpu-variant
	install -m 0755 $(CPU_VARIANT) $(LIB)

# The CPU-only variant kept aside in build/cpu, which the tests also load.
cpu-variant: setup
	$(BAZEL) build $(BAZEL_FLAGS) --repo_env=TFKIT_CUDA=0 //cc:_tfkit_ops.so
	install -D -m 0755 bazel-bin/cc/_tfkit_ops.so $(CPU_VARIANT)

test: cpu-variant build
	$(PY) -m pytest -q tests
	$(PY) tools/sanitize.py

# tfkit's op library built with ASan + UBSan, and the op tests run against it.
sanitize: setup
	$(PY) tools/sanitize.py

demo: build
	$(PY) examples/digits_classifier.py
	@echo
	$(PY) examples/serve_digits.py
	@echo
	$(PY) examples/prototype_op.py

bench: build
	for bench in benchmarks/bench_*.py; do $(PY) $$bench || exit 1; done

info: build
	$(PY) -m tfkit info

clean:
	-$(BAZEL) clean
	rm -rf $(LIB) build
