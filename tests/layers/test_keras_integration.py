"""Models built from every tfkit layer under each Keras `jit_compile`
setting and under `tf.distribute.MirroredStrategy`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tests.layers.every_layer_model import build_model, toy_data


def compiled_model(jit_compile):
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def pretend_a_gpu_is_visible(monkeypatch):
    real = tf.config.list_physical_devices

    def with_gpu(device_type=None):
        devices = real(device_type)
        if device_type in (None, "GPU"):
            devices = [*devices, tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
        return devices

    monkeypatch.setattr(tf.config, "list_physical_devices", with_gpu)


def test_auto_resolves_to_xla_where_keras_would_on_a_gpu_machine(monkeypatch):
    assert compiled_model("auto").jit_compile is False  # this machine has no GPU
    pretend_a_gpu_is_visible(monkeypatch)
    assert compiled_model("auto").jit_compile is True


@pytest.mark.parametrize("jit_compile", [True, False, "auto", "auto-on-gpu"])
def test_fit_evaluate_predict_save_and_export(jit_compile, tmp_path, monkeypatch):
    expect_xla = jit_compile in (True, "auto-on-gpu")
    if jit_compile == "auto-on-gpu":
        pretend_a_gpu_is_visible(monkeypatch)
        jit_compile = "auto"
    x, y = toy_data()
    model = compiled_model(jit_compile)
    assert model.jit_compile is expect_xla
    losses = model.fit(x, y, epochs=6, batch_size=32, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    loss = model.evaluate(x, y, verbose=0)
    predictions = model.predict(x, verbose=0)
    assert np.isfinite(loss) and predictions.shape == (len(x), 3)

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), predictions, rtol=1e-5, atol=1e-5)

    model.export(str(tmp_path / "exported"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(served.serve(x).numpy(), predictions, rtol=1e-5, atol=1e-5)


def has_no_gradient(weight) -> bool:
    """The attention's key bias adds the same number to every logit of a
    query's row, which the softmax removes: its gradient is 0 but for
    rounding, which Adam scales up, so two trainings agree only in keeping
    it near 0."""
    return weight.path.endswith("/key/bias")


def test_xla_and_plain_training_agree():
    x, y = toy_data()
    results = []
    for jit_compile in (True, False):
        model = compiled_model(jit_compile)
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
        results.append(model.weights)
    assert sum(map(has_no_gradient, results[1])) == 1
    for xla, plain in zip(*results, strict=True):
        if has_no_gradient(plain):
            assert np.abs(xla.numpy()).max() < 1e-3 and np.abs(plain.numpy()).max() < 1e-3, plain.path
        else:
            np.testing.assert_allclose(xla.numpy(), plain.numpy(), rtol=1e-4, atol=1e-4, err_msg=plain.path)


DISTRIBUTED_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tests.layers.every_layer_model import build_model, toy_data

def one_step(model, weights, x, y):
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return model.get_weights()

x, y = toy_data(64)
single = build_model()
initial = single.get_weights()
expected = one_step(single, initial, x, y)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    mirrored = build_model()
got = one_step(mirrored, initial, x, y)
moved = max(np.abs(e - w).max() for e, w in zip(expected, initial))
diff = max(np.abs(e - g).max() for e, g in zip(expected, got))
print("moved", moved, "diff", diff)
"""


def test_mirrored_strategy_step_matches_single_device():
    result = run_python(DISTRIBUTED_SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    moved, diff = float(words[words.index("moved") + 1]), float(words[words.index("diff") + 1])
    assert moved > 1e-3, "the step should change the weights"
    assert diff <= 1e-5, diff


def test_layers_report_jit_support_from_their_backend():
    for cls in (tfkit.layers.LayerNorm, tfkit.layers.RMSNorm):
        assert cls().supports_jit and cls(backend="reference").supports_jit
        assert not cls(backend="compiled").supports_jit


def test_explicitly_compiled_layers_keep_keras_auto_off_xla(monkeypatch):
    pretend_a_gpu_is_visible(monkeypatch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input([8]), keras.layers.Dense(8), tfkit.layers.LayerNorm(backend="compiled")])
    model.compile(optimizer="sgd", loss="mse", jit_compile="auto")
    assert model.jit_compile is False
    model.fit(np.ones([16, 8], np.float32), np.zeros([16, 8], np.float32), verbose=0)
