"""Library loading, build stamp, backend choice and the command line."""

import shutil

import pytest
import tensorflow as tf

import tfkit
from tests.conftest import ROOT, run_python
from tfkit import _loader, backend


def test_import_registers_ops_and_layers():
    result = run_python(
        "import tfkit\n"
        "import keras\n"
        "from tensorflow.python.framework import op_def_registry\n"
        "ops = [op_def_registry.get(n) is not None for n in ('Tfkit>LayerNorm', 'Tfkit>RMSNormGrad')]\n"
        "layers = [keras.saving.get_registered_object(n) is not None for n in ('tfkit>LayerNorm', 'tfkit>RMSNorm')]\n"
        "print(ops, layers)"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[True, True] [True, True]"


def test_build_stamp_names_this_tensorflow_and_cuda():
    stamp = tfkit.build_info()
    assert stamp["tf_version"] == tf.version.VERSION
    assert stamp["cuda"] in ("0", "1")
    if stamp["cuda"] == "1":
        assert stamp["cuda_archs"] == "sm_80,sm_90"


def test_library_loads_once():
    assert tfkit.load_library() is tfkit.load_library()


def stale_copy(tmp_path, version=b"1.99.9"):
    path = tmp_path / "_tfkit_ops.so"
    data = _loader.library_path().read_bytes()
    current = f"tf_version={tf.version.VERSION};".encode()
    assert current in data
    path.write_bytes(data.replace(current, b"tf_version=" + version + b";"))
    return path


def test_version_mismatch_is_refused_before_loading(tmp_path):
    with pytest.raises(_loader.OpLibraryError) as err:
        _loader._load(stale_copy(tmp_path))
    message = str(err.value)
    assert "1.99.9" in message and tf.version.VERSION in message and "Rebuild it against TensorFlow" in message


def test_missing_library_says_how_to_build(tmp_path):
    with pytest.raises(_loader.OpLibraryError, match=f"Rebuild it against TensorFlow {tf.version.VERSION}"):
        _loader.build_info(tmp_path / "nothing.so")


def test_the_advice_fits_how_the_library_came(tmp_path, monkeypatch):
    monkeypatch.delenv("TFKIT_LIBRARY", raising=False)
    assert _loader.rebuild_advice(_loader.library_path()) == f"Rebuild it with `make build` in {ROOT}."
    project = tmp_path / "my_ops"
    (project / "cc").mkdir(parents=True)
    (project / "cc" / "BUILD").write_text("")
    (project / "Makefile").write_text("")
    library = project / "my_ops" / "_my_ops_ops.so"
    assert _loader.rebuild_advice(library) == f"Rebuild it with `make build` in {project}."
    monkeypatch.setenv("TFKIT_LIBRARY", str(library))
    assert "unset it" in _loader.rebuild_advice(library)  # tfkit's library, named by TFKIT_LIBRARY


def test_library_without_stamp_is_refused(tmp_path):
    path = tmp_path / "_tfkit_ops.so"
    shutil.copy(_loader.library_path(), path)
    path.write_bytes(path.read_bytes().replace(b"TFKIT_BUILD_STAMP", b"XXXXX_BUILD_STAMP"))
    with pytest.raises(_loader.OpLibraryError, match="no tfkit build stamp"):
        _loader.build_info(path)


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.resolve(None) == "auto"
    monkeypatch.setenv(backend.ENV_VAR, "Reference")
    assert backend.resolve(None) == "reference"
    assert backend.resolve("compiled") == "compiled"
    monkeypatch.setenv(backend.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="TFKIT_BACKEND must be one of"):
        backend.resolve(None)
    with pytest.raises(ValueError, match="backend must be one of"):
        tfkit.ops.layer_norm(tf.ones([2, 3]), tf.ones([3]), tf.zeros([3]), backend="gpu")


def test_reference_backend_from_environment_runs_no_compiled_op(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    graph = tf.function(lambda x: tfkit.ops.rms_norm(x, tf.ones([3]))).get_concrete_function(tf.TensorSpec([2, 3]))
    assert not any(op.type.startswith("Tfkit") for op in graph.graph.get_operations())


def test_auto_falls_back_with_one_warning_and_compiled_fails(tmp_path):
    code = """
import warnings, numpy as np, tensorflow as tf
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import tfkit
    a = tfkit.ops.layer_norm(tf.ones([2, 3]) * [[1., 2., 3.]], tf.ones([3]), tf.zeros([3]))
    b = tfkit.ops.rms_norm(tf.ones([2, 3]), tf.ones([3]))
msgs = [str(w.message) for w in caught if 'tfkit' in str(w.message)]
assert len(msgs) == 1 and 'not found' in msgs[0] and 'make build' in msgs[0], msgs
np.testing.assert_allclose(a.numpy()[0], [-1.2247, 0, 1.2247], atol=1e-3)
try:
    tfkit.ops.layer_norm(tf.ones([2, 3]), tf.ones([3]), tf.zeros([3]), backend='compiled')
except tfkit.OpLibraryError as err:
    print('compiled refused:', err)
"""
    result = run_python(code, env={"TFKIT_LIBRARY": str(tmp_path / "missing.so")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled refused:" in result.stdout


def test_stale_library_refused_in_fresh_process(tmp_path):
    code = """
import tensorflow as tf, tfkit
try:
    tfkit.load_library()
except tfkit.OpLibraryError as err:
    print('refused:', err)
"""
    result = run_python(code, env={"TFKIT_LIBRARY": str(stale_copy(tmp_path))})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refused:" in result.stdout and "1.99.9" in result.stdout


def test_info_command():
    result = run_python("import sys; from tfkit_cli import main; sys.exit(main(['info']))")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"tensorflow       {tf.version.VERSION}" in out
    assert str(_loader.library_path()) in out
    assert f"tf_version={tf.version.VERSION}" in out
    assert "gpu kernels" in out and "devices" in out and "loads            yes" in out


def test_project_files_hard_code_no_tf_flags():
    for path in list((ROOT / "cc").rglob("*")) + list((ROOT / "third_party").rglob("*.bzl")) + [ROOT / ".bazelrc"]:
        if path.is_file():
            text = path.read_text()
            assert "-std=c++" not in text and "_GLIBCXX_USE_CXX11_ABI=" not in text, path


IMPORT_WITHOUT_LIBRARY = """
import warnings, numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import tfkit
    y = tfkit.ops.rms_norm(np.array([[3.0, 4.0]], np.float32), np.ones(2, np.float32))
messages = [str(w.message) for w in caught if 'tfkit' in str(w.message)]
assert len(messages) == 1, messages
np.testing.assert_allclose(y.numpy(), [[0.8485281, 1.1313709]], rtol=1e-5)
print('warned:', messages[0])
"""


@pytest.mark.parametrize("problem", ["missing", "stale", "unloadable"])
def test_import_never_fails_because_of_the_library(problem, tmp_path):
    if problem == "missing":
        path, says = tmp_path / "missing.so", "not found"
    elif problem == "stale":
        path, says = stale_copy(tmp_path), "1.99.9"
    else:
        path, says = tmp_path / "_tfkit_ops.so", "could not load"
        path.write_bytes(f"TFKIT_BUILD_STAMP tf_version={tf.version.VERSION};cuda=0;\0garbage".encode())
    result = run_python(IMPORT_WITHOUT_LIBRARY, env={"TFKIT_LIBRARY": str(path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warned:" in result.stdout and says in result.stdout and "make build" in result.stdout
