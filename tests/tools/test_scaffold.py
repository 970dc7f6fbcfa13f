"""`python -m tfkit new-op`: a generated family builds with Bazel, passes its
tests and runs its benchmark; bad names and existing files are refused."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tfkit import build, scaffold


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of this checkout's files (tracked and new, not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "tfkit"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = copy / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return copy


@pytest.mark.parametrize(
    "name,says",
    [
        ("SoftClip", "not a valid family name"),
        ("1clip", "not a valid family name"),
        ("a_b", "not a valid family name"),
        ("class", "not a valid family name"),
        ("norm", "clashes with an existing op family"),
        ("layer_norm", "clashes with an existing op family"),
    ],
)
def test_bad_names_are_refused(checkout, name, says):
    with pytest.raises(scaffold.ScaffoldError, match=says):
        scaffold.new_op(name, checkout)


def test_an_existing_file_is_never_overwritten(checkout):
    mine = checkout / "tests" / "ops" / "test_soft_clip.py"
    mine.write_text("# mine\n")
    before = (checkout / "cc" / "BUILD").read_text()
    with pytest.raises(scaffold.ScaffoldError, match="refusing to overwrite"):
        scaffold.new_op("soft_clip", checkout)
    assert mine.read_text() == "# mine\n"
    assert (checkout / "cc" / "BUILD").read_text() == before
    assert not (checkout / "kernels" / "soft_clip").exists()


def run(command, cwd, timeout=900, **env):
    full_env = {**os.environ, "PYTHONPATH": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_generated_family_builds_passes_its_tests_and_benchmarks(checkout):
    result = run([sys.executable, "-m", "tfkit", "new-op", "soft_clip"], checkout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote cc/kernels/soft_clip_kernels.cc" in result.stdout.replace(str(checkout) + "/", "")

    bazel = [str(checkout / "tools" / "bazel.sh"), "build", f"--repo_env=PYTHON_BIN_PATH={sys.executable}"]
    built = run([*bazel, "--repo_env=TFKIT_CUDA=0", "//cc:_tfkit_ops.so"], checkout)
    run([str(checkout / "tools" / "bazel.sh"), "shutdown"], checkout)
    assert built.returncode == 0, built.stderr[-3000:]
    library = str(checkout / "bazel-bin" / "cc" / "_tfkit_ops.so")

    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ops/test_soft_clip.py"],
                checkout, TFKIT_LIBRARY=library)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "22 passed" in tests.stdout

    bench = [sys.executable, "benchmarks/bench_soft_clip.py", "--rows", "64", "--cols", "256", "--repeats", "3"]
    measured = run(bench, checkout, TFKIT_LIBRARY=library)
    assert measured.returncode == 0, measured.stderr[-3000:]
    assert "soft_clip    forward+backward" in measured.stdout


@pytest.mark.skipif(build.find_cuda() is None, reason="no CUDA toolkit (nvcc) found")
def test_generated_cuda_kernels_compile(checkout, tmp_path):
    scaffold.new_op("soft_clip", checkout)
    nvcc = str(build.find_cuda() / "bin" / "nvcc")
    source = checkout / "kernels" / "soft_clip" / "soft_clip.cu.cc"
    command = [nvcc, "-x", "cu", "-std=c++17", "-O2", "-arch=sm_80", f"-I{checkout}", "-c", str(source)]
    result = subprocess.run([*command, "-o", str(tmp_path / "k.o")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
