"""A small Keras classifier on scikit-learn's bundled digits, with tfkit norms.

Trains a model that uses tfkit.layers.LayerNorm and RMSNorm, exports it as a
SavedModel, reloads it with tf.saved_model.load in a fresh Python process
that imports only tfkit (not this model code), and checks that the served
predictions match the trained model's. The SavedModel stays in
build/digits_model/1 (TensorFlow Serving's layout), where
examples/serve_digits.py serves it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tfkit

# TensorFlow Serving's layout: <base path>/<version>/saved_model.pb
SERVING_BASE = Path(__file__).resolve().parents[1] / "build" / "digits_model"

SERVE = """
import json, sys, numpy as np, tensorflow as tf, tfkit
export_dir, inputs, out = sys.argv[1:4]
model = tf.saved_model.load(export_dir)  # import tfkit registered the Tfkit> ops
logits = model.serve(np.load(inputs)).numpy()
np.save(out, logits)
print(json.dumps({"model_code_imported": "digits_classifier" in sys.modules}))
"""


def build_model() -> keras.Model:
    inputs = keras.Input([64], name="pixels")
    h = keras.layers.Dense(128)(inputs)
    h = tfkit.layers.LayerNorm()(h)
    h = keras.layers.Activation("gelu")(h)
    h = keras.layers.Dense(64)(h)
    h = tfkit.layers.RMSNorm()(h)
    h = keras.layers.Activation("gelu")(h)
    outputs = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(inputs, outputs)


def serve_in_fresh_process(export_dir: Path, x: np.ndarray, workdir: Path) -> np.ndarray:
    np.save(workdir / "inputs.npy", x)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(export_dir), str(workdir / "inputs.npy"), str(workdir / "logits.npy")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"serving process failed:\n{result.stderr[-3000:]}")
    assert json.loads(result.stdout.strip().splitlines()[-1])["model_code_imported"] is False
    return np.load(workdir / "logits.npy")


def ascii_digit(pixels: np.ndarray) -> str:
    shades = " .:-=+*#%@"
    return "\n".join("".join(shades[int(v * 9.99)] * 2 for v in row) for row in pixels.reshape(8, 8))


def main() -> None:
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=0)

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(x_train, y_train, epochs=20, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"trained 20 epochs: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}")
    print(f"test accuracy (in process): {accuracy:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        export_dir = SERVING_BASE / "1"
        shutil.rmtree(export_dir, ignore_errors=True)
        model.export(str(export_dir), verbose=False)
        served = serve_in_fresh_process(export_dir, x_test, workdir)

    expected = model.predict(x_test, verbose=0)
    served_accuracy = float(np.mean(served.argmax(-1) == y_test))
    max_diff = float(np.max(np.abs(served - expected)))
    print(f"test accuracy (SavedModel in a fresh process): {served_accuracy:.4f}, max |diff| {max_diff:.2e}")
    if max_diff > 1e-5:
        raise SystemExit("served outputs differ from the trained model's")

    i = 0
    print(f"exported to {SERVING_BASE / '1'}")
    print(f"\none prediction: true label {y_test[i]}, predicted {served[i].argmax()}")
    print(ascii_digit(x_test[i]))


if __name__ == "__main__":
    main()
