"""`pip wheel .` builds a wheel with the op library, headers and Bazel rules,
which installs into a separate venv and runs outside the source tree."""

import os
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import ROOT

INSTALLED_CHECK = """
import importlib.metadata, pathlib, sys
import numpy as np, tensorflow as tf
import tfkit
package = pathlib.Path(tfkit.__file__).parent
assert str(package).startswith(sys.prefix), package
assert tfkit.library_path().parent == package and tfkit.build_info()["tf_version"] == tf.version.VERSION
y = tfkit.ops.layer_norm(tf.ones([2, 4]) * [1.0, 2.0, 3.0, 4.0], tf.ones([4]), tf.zeros([4]), backend="compiled")
np.testing.assert_allclose(y.numpy()[0], [-1.3416, -0.4472, 0.4472, 1.3416], atol=1e-3)
assert (pathlib.Path(tfkit.build.include_dir()) / "tfkit" / "op_utils.h").is_file()
assert (pathlib.Path(tfkit.build.bazel_dir()) / "cc" / "op_library.bzl").is_file()
assert (pathlib.Path(tfkit.build.bazel_dir()) / "third_party" / "tf" / "tf_configure.bzl").is_file()
print("requires", importlib.metadata.requires("tfkit"))
"""


@pytest.mark.slow
def test_wheel_installs_into_a_separate_venv_and_runs(tmp_path):
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps", "-q", "-w", str(wheels)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (wheel,) = wheels.glob("tfkit-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # Without PYTHONPATH (make sets it to the checkout, whose tfkit.egg-info
    # would make pip think tfkit is installed already).
    outside = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", str(wheel)], capture_output=True, text=True, env=outside
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert "Successfully installed tfkit-0.1.0" in installed.stdout, installed.stdout[-2000:]
    # TensorFlow and friends come from this environment (no download); tfkit from the wheel.
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / "venv" / site.split(str(venv) + "/")[1] / "deps.pth").write_text(sysconfig.get_paths()["purelib"])

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [str(python), "-c", INSTALLED_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "requires ['tensorflow==2.21.0']" in result.stdout
