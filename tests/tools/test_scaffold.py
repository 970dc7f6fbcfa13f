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


PROTOTYPE = '''
import numpy as np

import tfkit


def _grad(dy, a, b, y, *, scale, power, negate):
    sign = -1.0 if negate else 1.0
    return dy * sign * scale * b**power, dy * sign * scale * a * power * b ** (power - 1)


@tfkit.prototype.op(grad=_grad)
def scaled_product(a, b, *, scale=0.5, power=2, negate=False):
    """scale * a * b**power, negated if `negate`."""
    return (-1.0 if negate else 1.0) * scale * a * b**power


@tfkit.prototype.op(outputs=lambda a: [a, a])
def two_outputs(a):
    return a, a


@tfkit.prototype.op
def required_attr(a, *, scale):
    return a * scale


@tfkit.prototype.op
def string_attr(a, *, mode="fast"):
    return a


@tfkit.prototype.op
def reserved_name(a, y):
    return a + y


def plain_function(a):
    return a
'''


@pytest.fixture
def with_prototypes(checkout) -> Path:
    (checkout / "my_prototypes.py").write_text(PROTOTYPE)
    return checkout


def test_from_prototype_takes_inputs_attributes_and_docstring(with_prototypes):
    scaffold.new_op("scaled_product", with_prototypes, "my_prototypes:scaled_product")
    ops = (with_prototypes / "cc" / "ops" / "scaled_product_ops.cc").read_text()
    for line in ['.Input("a: T")', '.Input("b: T")', '.Attr("scale: float = 0.5")', '.Attr("power: int = 2")',
                 '.Attr("negate: bool = false")', '.Output("da: T")', '.Output("db: T")']:  # fmt: skip
        assert line in ops
    wrapper = (with_prototypes / "tfkit" / "ops" / "scaled_product.py").read_text()
    assert "def _prepare(a, b, *, scale: float = 0.5, power: int = 2, negate: bool = False):" in wrapper
    assert "scale * a * b**power, negated if `negate`." in wrapper
    tests = (with_prototypes / "tests" / "ops" / "test_scaled_product.py").read_text()
    assert "from my_prototypes import scaled_product as prototype" in tests
    assert "strict=True" in tests and "reference=prototype" in tests


@pytest.mark.parametrize(
    "source,says",
    [
        ("my_prototypes:plain_function", "not a prototype op"),
        ("my_prototypes:two_outputs", "declares outputs="),
        ("my_prototypes:required_attr", "'scale' has no default"),
        ("my_prototypes:string_attr", "float, int and bool attributes"),
        ("my_prototypes:reserved_name", "'y' can't be used"),
        ("my_prototypes:missing", "has no 'missing'"),
        ("no_such_module:f", "can't import no_such_module"),
        ("my_prototypes", "expected MODULE:FUNCTION"),
    ],
)
def test_from_refuses_what_it_cannot_generate(with_prototypes, source, says):
    before = (with_prototypes / "cc" / "BUILD").read_text()
    with pytest.raises(scaffold.ScaffoldError, match=says):
        scaffold.new_op("from_proto", with_prototypes, source)
    assert (with_prototypes / "cc" / "BUILD").read_text() == before
    assert not (with_prototypes / "kernels" / "from_proto").exists()


def run(command, cwd, timeout=900, **env):
    full_env = {**os.environ, "PYTHONPATH": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_generated_families_build_pass_their_tests_and_benchmark(with_prototypes):
    checkout = with_prototypes
    result = run([sys.executable, "-m", "tfkit", "new-op", "soft_clip"], checkout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote cc/kernels/soft_clip_kernels.cc" in result.stdout.replace(str(checkout) + "/", "")
    source = ["--from", "my_prototypes:scaled_product"]
    result = run([sys.executable, "-m", "tfkit", "new-op", "scaled_product", *source], checkout)
    assert result.returncode == 0, result.stderr[-3000:]

    bazel = [str(checkout / "tools" / "bazel.sh"), "build", f"--repo_env=PYTHON_BIN_PATH={sys.executable}"]
    if os.environ.get("TFKIT_BAZEL_DISK_CACHE"):  # `make test`'s: unchanged actions come from there
        bazel.append(f"--disk_cache={os.environ['TFKIT_BAZEL_DISK_CACHE']}")
    built = run([*bazel, "--repo_env=TFKIT_CUDA=0", "//cc:_tfkit_ops.so"], checkout)
    run([str(checkout / "tools" / "bazel.sh"), "shutdown"], checkout)
    assert built.returncode == 0, built.stderr[-3000:]
    library = str(checkout / "bazel-bin" / "cc" / "_tfkit_ops.so")

    pytest_command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    tests = run([*pytest_command, "tests/ops/test_soft_clip.py"], checkout, TFKIT_LIBRARY=library)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "22 passed" in tests.stdout
    # The generated kernels compute the sum of the inputs, which the prototype
    # comparison must catch: strict xfail (an XPASS would fail the run).
    tests = run([*pytest_command, "-rx", "tests/ops/test_scaled_product.py"], checkout, TFKIT_LIBRARY=library)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "21 passed, 2 xfailed" in tests.stdout

    bench = [sys.executable, "benchmarks/bench_soft_clip.py", "--rows", "64", "--cols", "256", "--repeats", "3"]
    measured = run(bench, checkout, TFKIT_LIBRARY=library)
    assert measured.returncode == 0, measured.stderr[-3000:]
    assert "soft_clip    forward+backward" in measured.stdout


@pytest.mark.skipif(build.find_cuda() is None, reason="no CUDA toolkit (nvcc) found")
@pytest.mark.parametrize("family,source", [("soft_clip", None), ("scaled_product", "my_prototypes:scaled_product")])
def test_generated_cuda_kernels_compile(with_prototypes, tmp_path, family, source):
    scaffold.new_op(family, with_prototypes, source)
    nvcc = str(build.find_cuda() / "bin" / "nvcc")
    kernels = with_prototypes / "kernels" / family / f"{family}.cu.cc"
    command = [nvcc, "-x", "cu", "-std=c++17", "-O2", "-arch=sm_80", f"-I{with_prototypes}", "-c", str(kernels)]
    result = subprocess.run([*command, "-o", str(tmp_path / "k.o")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
