"""tfkit.build(sanitize=True): a deliberate out-of-bounds read is reported,
a clean op runs clean, in processes started under sanitizer_env()."""

import os
import subprocess
import sys

import pytest

import tfkit
from tests.conftest import ROOT

OPS = r"""
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

using namespace tensorflow;  // NOLINT: a test op

REGISTER_OP("SanitizeTest>Read")
    .Attr("bytes: int")
    .Output("y: float")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(4));
      return absl::OkStatus();
    });

// Fills a 16-byte output, then sums `bytes` bytes of it: 32 reads past its end.
class ReadOp : public OpKernel {
 public:
  explicit ReadOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("bytes", &bytes_));
  }
  void Compute(OpKernelContext* ctx) override {
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({4}), &y));
    float* data = y->flat<float>().data();
    for (int i = 0; i < 4; ++i) data[i] = 1.0f;
    volatile float total = 0;
    for (int i = 0; i < bytes_ / 4; ++i) total += data[i];
    data[0] = total;
  }

 private:
  int bytes_;
};
REGISTER_KERNEL_BUILDER(Name("SanitizeTest>Read").Device(DEVICE_CPU), ReadOp);
"""

RUN = """
import sys, tfkit
module = tfkit.build.load_inline("sanitize_probe", sys.argv[1], sanitize=True)
print("sum", module.sanitize_test_read(bytes=int(sys.argv[2])).numpy()[0])
"""


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """The environment of a sanitized child process; the first child builds
    the probe library into this cache, the others load it from there."""
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "TFKIT_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return {**env, **tfkit.build.sanitizer_env()}


def run(env, read_bytes):
    return subprocess.run(
        [sys.executable, "-c", RUN, OPS, str(read_bytes)], env=env, capture_output=True, text=True, timeout=600
    )


def test_a_read_past_the_output_is_reported_and_a_clean_read_is_not(sanitized):
    clean = run(sanitized, 16)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert clean.stdout.split("sum")[1].strip() == "4.0"
    overflow = run(sanitized, 32)
    assert overflow.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in overflow.stderr


def test_a_sanitized_library_outside_the_sanitizer_env_says_what_to_do(sanitized, tmp_path):
    env = {k: v for k, v in sanitized.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    result = run(env, 16)
    assert result.returncode != 0
    assert "sanitizer-env" in result.stderr


def test_sanitizer_env_preloads_asan_then_libstdcxx():
    preload = tfkit.build.sanitizer_env()["LD_PRELOAD"].split(":")
    assert preload[0].endswith("libasan.so") and preload[1].endswith("libstdc++.so.6")
