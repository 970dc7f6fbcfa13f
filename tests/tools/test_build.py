"""tfkit.build: compile, cache, lock, errors, stamps, without Bazel."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import ROOT, run_python

SCALE_OP = r"""
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

REGISTER_OP("BuildTest>Scale")
    .Input("x: float")
    .Output("y: float")
    .Attr("factor: float = 2.0")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

class ScaleOp : public tensorflow::OpKernel {
 public:
  explicit ScaleOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("factor", &factor_));
  }
  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& x = ctx->input(0);
    OP_REQUIRES_OK(ctx, tfkit::CheckRankAtLeast1("x", x));
    tensorflow::Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    tfkit::ShardRows(ctx, x.NumElements(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = in[i] * factor_;
    });
  }

 private:
  float factor_;
};
REGISTER_KERNEL_BUILDER(Name("BuildTest>Scale").Device(tensorflow::DEVICE_CPU), ScaleOp);
"""

# A compiler that logs each compile (start and end, with times) and can be
# slowed down, in front of the real one.
WRAPPER = """#!/bin/sh
case " $* " in *" -c "*)
  echo "start $(date +%s.%N) $*" >> "$CXX_LOG"
  if [ -n "$CXX_SLEEP" ]; then sleep "$CXX_SLEEP"; fi
  g++ "$@"; rc=$?
  echo "end $(date +%s.%N)" >> "$CXX_LOG"
  exit $rc;;
esac
exec g++ "$@"
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh cache and the logging compiler, for this process and children."""
    wrapper = tmp_path / "cxx"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    values = {"TFKIT_CACHE_DIR": str(tmp_path / "cache"), "CXX": str(wrapper), "CXX_LOG": str(tmp_path / "log")}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def compiles(env, source_name: str) -> int:
    log = Path(env["CXX_LOG"])
    return sum(1 for line in log.read_text().splitlines() if line.startswith("start") and source_name in line) if log.exists() else 0


def test_load_inline_builds_a_stamped_working_op_and_caches_it(env, capfd):
    module = tfkit.build.load_inline("scale_op", SCALE_OP)
    np.testing.assert_array_equal(module.build_test_scale(tf.ones([2, 3]), factor=3.0).numpy(), np.full([2, 3], 3.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="x must have rank >= 1"):
        module.build_test_scale(tf.constant(1.0))
    (library,) = Path(env["TFKIT_CACHE_DIR"]).glob("scale_op-*/scale_op.so")
    stamp = tfkit.build_info(library)
    assert stamp["tf_version"] == tf.version.VERSION and stamp["cuda"] == "0"
    assert re.search(r"tfkit.build scale_op: compiled scale_op.cc in \d+\.\d s", capfd.readouterr().err)

    code = f"""
import time
import tfkit
start = time.perf_counter()
module = tfkit.build.load_inline("scale_op", {SCALE_OP!r})
print("seconds", time.perf_counter() - start)
print(module.build_test_scale([1.0, 2.0]).numpy().tolist())
"""
    before = compiles(env, "scale_op.cc")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert compiles(env, "scale_op.cc") == before == 1
    assert "compiled" not in result.stderr
    assert float(result.stdout.split("seconds")[1].split()[0]) < 1.0
    assert result.stdout.strip().endswith("[2.0, 4.0]")


def test_a_compile_error_shows_the_first_errors_and_the_log(env):
    with pytest.raises(tfkit.build.BuildError) as err:
        tfkit.build.load_inline("broken", "int f() { return undeclared_name; }\n")
    message = str(err.value)
    assert "tfkit.build broken: broken.cc failed" in message
    assert re.search(r"broken\.cc:1:\d+: error: .undeclared_name. was not declared", message)
    log = Path(message.split("full log: ")[1].strip())
    assert log.is_file() and "undeclared_name" in log.read_text()
    assert not list(Path(env["TFKIT_CACHE_DIR"]).glob("broken-*/broken.so"))


def write_sources(folder: Path, count: int, header: str = "1") -> list[Path]:
    folder.mkdir(exist_ok=True)
    (folder / "local.h").write_text(f"#define LOCAL_VALUE {header}\n")
    sources = []
    for i in range(count):
        source = folder / f"part{i}.cc"
        source.write_text(f'#include "local.h"\nextern "C" int part{i}() {{ return LOCAL_VALUE + {i}; }}\n')
        sources.append(source)
    return sources


def test_independent_sources_compile_in_parallel(env, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX_SLEEP", "1")
    tfkit.build.load("parallel", write_sources(tmp_path / "src", 2))
    lines = [line.split() for line in Path(env["CXX_LOG"]).read_text().splitlines()]
    starts = [float(words[1]) for words in lines if words[0] == "start"]
    ends = [float(words[1]) for words in lines if words[0] == "end"]
    assert len(starts) == 3  # two sources and the build stamp
    assert sorted(starts)[1] < min(ends), "no two compiles overlapped"


def test_a_changed_local_header_rebuilds(env, tmp_path):
    folder = tmp_path / "src"
    tfkit.build.load("headers", write_sources(folder, 1, header="1"))
    tfkit.build.load("headers", write_sources(folder, 1, header="1"))
    assert compiles(env, "part0.cc") == 1
    tfkit.build.load("headers", write_sources(folder, 1, header="2"))
    assert compiles(env, "part0.cc") == 2


BUILD_IN_CHILD = """
import sys, tfkit
tfkit.build.load("shared", [sys.argv[1]])
print("loaded")
"""


def start_child(source: Path, extra_env: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra_env}
    return subprocess.Popen(
        [sys.executable, "-c", BUILD_IN_CHILD, str(source)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_two_processes_building_at_once_compile_once(env, tmp_path):
    (source,) = write_sources(tmp_path / "src", 1)
    children = [start_child(source, {"CXX_SLEEP": "2"}) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-2000:] for _, err in outputs]
    assert all(out.strip().endswith("loaded") for out, _ in outputs)
    assert compiles(env, "part0.cc") == 1


def test_a_killed_build_leaves_nothing_that_loads(env, tmp_path):
    (source,) = write_sources(tmp_path / "src", 1)
    child = start_child(source, {"CXX_SLEEP": "30"})
    deadline = time.time() + 60
    while compiles(env, "part0.cc") == 0 and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)  # the child and its compiler
    child.wait()
    assert not list(Path(env["TFKIT_CACHE_DIR"]).glob("shared-*/shared.so"))
    tfkit.build.load("shared", [source])  # the next call builds it whole
    assert list(Path(env["TFKIT_CACHE_DIR"]).glob("shared-*/shared.so"))


def test_a_rebuilt_op_in_the_same_process_is_a_clear_error(env):
    tfkit.build.load_inline("first_build", SCALE_OP.replace("BuildTest>Scale", "BuildTest>Twice"))
    changed = SCALE_OP.replace("BuildTest>Scale", "BuildTest>Twice").replace("in[i] * factor_", "in[i] * factor_ + 1")
    with pytest.raises(tfkit.OpLibraryError, match=r"already has ops of those names.*Restart Python"):
        tfkit.build.load_inline("first_build", changed)


def test_include_dir_holds_the_public_headers():
    assert (Path(tfkit.build.include_dir()) / "tfkit" / "op_utils.h").is_file()


def test_cuda_architectures_match_the_bazel_macro():
    text = (ROOT / "cc" / "op_library.bzl").read_text()
    archs = re.search(r"CUDA_ARCHS = \[([^\]]*)\]", text).group(1)
    assert tuple(a.strip().strip('"') for a in archs.split(",") if a.strip()) == tfkit.build.CUDA_ARCHS


CUDA_KERNEL = r"""
#include <cuda_runtime.h>
__global__ void AddOneKernel(float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}
cudaError_t LaunchAddOne(cudaStream_t stream, float* x, int n) {
  AddOneKernel<<<(n + 255) / 256, 256, 0, stream>>>(x, n);
  return cudaGetLastError();
}
"""


@pytest.mark.slow
@pytest.mark.skipif(tfkit.build.find_cuda() is None, reason="no CUDA toolkit (nvcc) found")
def test_cuda_sources_build_with_nvcc_and_stamp_cuda(env):
    # Another op name: this process may have registered BuildTest>Scale already.
    source = SCALE_OP.replace("BuildTest>Scale", "BuildTest>CudaScale")
    module = tfkit.build.load_inline("cuda_scale", source, cuda_source=CUDA_KERNEL)
    np.testing.assert_array_equal(module.build_test_cuda_scale(tf.ones([2]), factor=2.0).numpy(), [2.0, 2.0])
    (library,) = Path(env["TFKIT_CACHE_DIR"]).glob("cuda_scale-*/cuda_scale.so")
    stamp = tfkit.build_info(library)
    assert stamp["cuda"] == "1" and stamp["cuda_archs"] == ",".join(tfkit.build.CUDA_ARCHS)


def test_the_static_link_target_registers_every_op_in_a_binary():
    """//cc:tfkit_ops_static (what TensorFlow Serving links in): a binary
    with it linked statically has every REGISTER_OP of cc/ops and kernels for each."""
    check = ROOT / "build" / "static_link_check"
    if not check.is_file():
        pytest.skip("make build links build/static_link_check (//cc:static_link_check)")
    declared = set()
    for source in (ROOT / "cc" / "ops").glob("*_ops.cc"):
        declared |= set(re.findall(r'REGISTER_OP\("(Tfkit>\w+)"\)', source.read_text()))
    result = subprocess.run([str(check)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    kernels = dict(re.findall(r"^(Tfkit>\w+) kernels=(\d+)$", result.stdout, re.M))
    assert declared and set(kernels) == declared, (sorted(declared), result.stdout)
    assert all(int(count) > 0 for count in kernels.values()), result.stdout
