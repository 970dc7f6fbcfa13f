"""The export guard and `tfkit.saved_model.check` / `python -m tfkit check`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tests.prototype import sample_ops
from tfkit.saved_model import ExportError


class UsesSoftclip(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4])])
    def serve(self, x):
        return sample_ops.softclip(x, limit=2.0) * 2.0


def assert_refusal(err, *where):
    message = str(err.value)
    assert "prototype ops" in message and "softclip" in message and "Nothing was written" in message
    assert "@op.reference" in message and 'backend="reference"' in message
    for part in where:
        assert part in message, (part, message)


def test_tf_saved_model_save_is_refused_before_writing(tmp_path):
    target = tmp_path / "new"
    with pytest.raises(ExportError) as err:
        tf.saved_model.save(UsesSoftclip(), str(target))
    assert_refusal(err, "node 'softclip'", "__inference_serve")
    assert not target.exists()


def test_an_existing_directory_is_left_untouched(tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ExportError):
        tf.saved_model.save(UsesSoftclip(), str(target))
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"


class SoftClip(keras.layers.Layer):
    def call(self, x):
        return sample_ops.softclip(x)


def test_keras_export_is_refused_and_names_the_layer(tmp_path):
    model = keras.Sequential([keras.Input([4]), keras.layers.Dense(4), SoftClip(name="my_softclip")])
    with pytest.raises(ExportError) as err:
        model.export(str(tmp_path / "exported"), verbose=False)
    assert_refusal(err, "my_softclip")
    assert not (tmp_path / "exported").exists()


def test_an_op_with_a_reference_exports_and_serves_in_a_fresh_process(tmp_path):
    module = tf.Module()
    module.serve = tf.function(lambda x: sample_ops.cube(x), input_signature=[tf.TensorSpec([None])])
    tf.saved_model.save(module, str(tmp_path / "cube"))
    assert tfkit.saved_model.check(str(tmp_path / "cube")).ok
    code = f"""
import tensorflow as tf, tfkit
print(tf.saved_model.load({str(tmp_path / "cube")!r}).serve(tf.constant([1.0, 2.0])).numpy().tolist())
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("[1.0, 8.0]")


def saved_with_raw_callback(path):
    """A SavedModel holding a plain tf.numpy_function (not a tfkit prototype,
    so the guard lets it through) and a Tfkit> op."""
    module = tf.Module()
    module.serve = tf.function(
        lambda x: tf.numpy_function(np.negative, [x], tf.float32) + tfkit.ops.rms_norm(x, tf.ones([4])),
        input_signature=[tf.TensorSpec([None, 4])],
    )
    tf.saved_model.save(module, str(path))
    return path


def test_check_reports_python_callbacks_and_custom_ops(tmp_path):
    report = tfkit.saved_model.check(str(saved_with_raw_callback(tmp_path / "raw")))
    assert not report.ok
    assert [n.op_type for n in report.python_callbacks] == ["PyFunc"]
    assert report.custom_ops == {"Tfkit>RMSNorm": True}
    text = str(report)
    assert "PROBLEMS" in text and "PyFunc" in text and "Tfkit>RMSNorm: provided by the loaded op library" in text


def test_check_command_exit_codes(tmp_path):
    good = tmp_path / "good"
    module = tf.Module()
    module.serve = tf.function(lambda x: tfkit.ops.layer_norm(x, tf.ones([4]), tf.zeros([4])))
    module.serve.get_concrete_function(tf.TensorSpec([None, 4]))
    tf.saved_model.save(module, str(good))
    bad = saved_with_raw_callback(tmp_path / "bad")
    script = "import sys; from tfkit_cli import main; sys.exit(main(['check', sys.argv[1]]))"
    outcomes = {}
    for name, path, env in [
        ("good", good, {}),
        ("bad", bad, {}),
        ("no library", good, {"TFKIT_LIBRARY": str(tmp_path / "missing.so")}),
    ]:
        result = run_python(script.replace("sys.argv[1]", repr(str(path))), env=env)
        outcomes[name] = (result.returncode, result.stdout)
    assert outcomes["good"][0] == 0 and "OK" in outcomes["good"][1]
    assert outcomes["bad"][0] == 1 and "PyFunc" in outcomes["bad"][1]
    assert outcomes["no library"][0] == 1 and "Tfkit>LayerNorm: NOT registered" in outcomes["no library"][1]


def test_check_of_a_directory_without_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a SavedModel"):
        tfkit.saved_model.check(str(tmp_path))
