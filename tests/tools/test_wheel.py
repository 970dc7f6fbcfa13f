"""`pip wheel .` builds a wheel with the op library, headers, Bazel rules and
templates, which installs into a separate venv and runs outside the source
tree: the ops, the `tfkit` command, and an `init` project built both ways."""

import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import tomllib

from tests.conftest import ROOT, project_bazel_flags
from tests.tools.test_init import COMPILED_OPS_CHECK

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
assert "installed from a wheel" in tfkit._loader.rebuild_advice(tfkit.library_path())
requires = importlib.metadata.requires("tfkit")
print("requires", [r for r in requires if "extra ==" not in r])
print("serve extra", sorted(r.split(";")[0].split(">=")[0].split("==")[0] for r in requires if 'extra == "serve"' in r))
"""


def test_package_data_holds_every_file_of_the_package_that_is_not_python():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tfkit"]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "tfkit"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    data = [name.removeprefix("tfkit/") for name in tracked if not name.endswith(".py")]
    assert "scaffold/project/Makefile.tmpl" in data
    left_out = [name for name in data if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)]
    assert not left_out, f"add these to [tool.setuptools.package-data] in pyproject.toml: {left_out}"


def run(command, cwd, env, timeout=900):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: " + result.stdout[-2000:] + result.stderr[-3000:]
    return result


def check_init_project(venv, folder, env):
    """`tfkit init` and `tfkit new-op` from the installed wheel, outside the
    source tree; the project built with tfkit.build and with Bazel (no PY=:
    its Makefile runs the wheel's Python) runs its compiled ops both ways,
    and the family new-op made passes its tests."""
    tfkit = str(venv / "bin" / "tfkit")
    assert run([tfkit, "--help"], folder, env).stdout.startswith("usage: tfkit")
    run([tfkit, "init", "my_ops"], folder, env)
    project = folder / "my_ops"
    assert f"PY ?= {venv / 'bin' / 'python'}" in (project / "Makefile").read_text()
    run([tfkit, "new-op", "scaled_softmax"], project, env)
    python = str(venv / "bin" / "python")
    run(["make", "build-nobazel"], project, env)
    assert "match their references" in run([python, "-c", COMPILED_OPS_CHECK], project, env).stdout
    try:
        run(["make", "build", *project_bazel_flags()], project, env)
        assert "match their references" in run([python, "-c", COMPILED_OPS_CHECK], project, env).stdout
        pytest_command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_scaled_softmax.py"]
        tests = run(pytest_command, project, env)
    finally:
        subprocess.run(["make", "clean"], cwd=project, env=env, capture_output=True, timeout=300)
    assert "22 passed" in tests.stdout


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

    bazel = shutil.which("bazelisk") or shutil.which("bazel-4") or shutil.which("bazel")
    path = [str(venv / "bin"), *([os.path.dirname(bazel)] if bazel else []), "/usr/bin", "/bin"]
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(tmp_path),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TFKIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [str(python), "-c", INSTALLED_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "requires ['tensorflow==2.21.0']" in result.stdout
    assert "serve extra ['aiohttp', 'grpcio', 'tensorflow-serving-api']" in result.stdout
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    check_init_project(venv, outside, env)
