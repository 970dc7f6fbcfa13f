"""GPU kernels: registrations are in the CUDA build; numerics run on a GPU."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels as registered

import tfkit
from tests.conftest import ROOT, run_python
from tfkit.ops import norm

GPUS = tf.config.list_physical_devices("GPU")
needs_gpu = pytest.mark.skipif(not GPUS, reason="no GPU visible to TensorFlow")
OPS = ["Tfkit>LayerNorm", "Tfkit>LayerNormGrad", "Tfkit>RMSNorm", "Tfkit>RMSNormGrad"]


def devices_for(op_name):
    tfkit.load_library()
    return {k.device_type for k in registered.get_registered_kernels_for_op(op_name).kernel}


@pytest.mark.parametrize("op_name", OPS)
def test_kernel_registrations_follow_build_stamp(op_name):
    devices = devices_for(op_name)
    assert "CPU" in devices
    assert ("GPU" in devices) == (tfkit.build_info()["cuda"] == "1")


def test_cuda_build_links_device_code():
    if tfkit.build_info()["cuda"] != "1":
        pytest.skip("library built without CUDA")
    data = tfkit._loader.library_path().read_bytes()
    assert b".nv_fatbin" in data


@needs_gpu
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16, tf.bfloat16], ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(8192, 1024), (3, 4097), (0, 8), (5, 1), (7,)], ids=str)
def test_gpu_matches_cpu(dtype, shape):
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=shape), dtype)
    gamma = tf.cast(rng.normal(size=shape[-1:]), dtype)
    beta = tf.cast(rng.normal(size=shape[-1:]), dtype)
    upstream = tf.cast(rng.normal(size=shape), dtype)
    results = {}
    for device in ("/CPU:0", "/GPU:0"):
        with tf.device(device):
            with tf.GradientTape() as tape:
                tape.watch([x, gamma, beta])
                y = norm.layer_norm(x, gamma, beta, backend="compiled")
                z = norm.rms_norm(x, gamma, backend="compiled")
                loss = tf.reduce_sum(tf.cast((y + z) * upstream, tf.float32))
            results[device] = [y, z, *tape.gradient(loss, [x, gamma, beta])]
    tol = {tf.float64: 1e-9, tf.float32: 1e-3, tf.float16: 3e-2, tf.bfloat16: 2e-1}[dtype]
    for cpu, gpu in zip(results["/CPU:0"], results["/GPU:0"], strict=True):
        np.testing.assert_allclose(
            tf.cast(gpu, tf.float64).numpy(), tf.cast(cpu, tf.float64).numpy(), rtol=tol, atol=tol
        )


CPU_VARIANT = ROOT / "build" / "cpu" / "_tfkit_ops.so"


@pytest.mark.skipif(not CPU_VARIANT.exists(), reason="CPU-only variant not built (make cpu-variant)")
def test_cpu_only_variant_loads_and_runs():
    code = """
import numpy as np, tensorflow as tf, tfkit
from tensorflow.python.framework import kernels
stamp = tfkit.build_info()
tfkit.load_library()
devices = {k.device_type for k in kernels.get_registered_kernels_for_op('Tfkit>LayerNorm').kernel}
x = tf.constant([[1.0, 2.0, 3.0]])
y = tfkit.ops.layer_norm(x, tf.ones([3]), tf.zeros([3]), backend='compiled')
np.testing.assert_allclose(y.numpy(), [[-1.2247356, 0.0, 1.2247356]], rtol=1e-5)
print(stamp['cuda'], sorted(devices))
"""
    result = run_python(code, env={"TFKIT_LIBRARY": str(CPU_VARIANT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["0", "['CPU']"]


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    default = Path("/usr/local/cuda/bin/nvcc")
    return found or (str(default) if default.exists() else None)


@pytest.mark.skipif(find_nvcc() is None, reason="no CUDA toolkit (nvcc) found")
def test_the_gpu_check_is_ready(tmp_path):
    """tools/gpu_check.sh's module builds with CUDA here, and its script
    prepares every case and CPU reference (the GPU part needs a GPU)."""
    built = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_kernels_module.py"), "--cuda", "on"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    module = built.stdout.strip().splitlines()[-1]
    dry = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--module", module, "--dry-run", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "numerics cases prepared" in dry.stdout
