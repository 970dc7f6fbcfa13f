"""Write your own op: from a NumPy prototype to a checked, exportable op.

1. `tfkit.prototype.op` turns a NumPy function (and its gradient) into an op.
2. `tfkit.testing.opcheck` checks it the way tfkit checks its own ops.
3. A Keras layer uses it in `model.fit`.
4. Exporting the model is refused: a SavedModel can't hold Python code.
5. A pure-TensorFlow reference declared on the same op makes it exportable,
   and `python -m tfkit check` confirms a server can run the SavedModel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import tfkit


def _softclip_grad(dy, x, y, *, limit):
    return dy * (1.0 - (y / limit) ** 2)


@tfkit.prototype.op(grad=_softclip_grad)
def softclip(x, *, limit=3.0):
    """limit * tanh(x / limit): a smooth clip to (-limit, limit)."""
    return limit * np.tanh(x / limit)


class SoftClip(keras.layers.Layer):
    def __init__(self, limit=3.0, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit

    def call(self, x):
        return softclip(x, limit=self.limit)


def build_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input([8]), keras.layers.Dense(16), SoftClip(2.0, name="softclip"), keras.layers.Dense(1)]
    )


def main() -> None:
    x = tf.random.stateless_normal([4, 8], seed=[1, 2]) * 3.0
    print("1. prototype:", np.round(softclip(x, limit=2.0).numpy()[0, :4], 3))

    report = tfkit.testing.opcheck(softclip, [x], {"limit": 2.0}, reference=lambda x, limit: limit * tf.tanh(x / limit))
    print("2.", report)

    data = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    target = np.tanh(data[:, :1] - data[:, 1:2])
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    losses = model.fit(data, target, epochs=10, batch_size=32, verbose=0).history["loss"]
    print(f"3. model.fit with the prototype in a layer: loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "model"
        try:
            model.export(str(export_dir), verbose=False)
        except tfkit.saved_model.ExportError as err:
            print("4. export refused:", str(err).splitlines()[0])
            print("  ", str(err).splitlines()[1].strip())
            print("   nothing written:", not export_dir.exists())

        @softclip.reference
        def _softclip_reference(x, *, limit=3.0):
            return limit * tf.tanh(x / limit)

        model.export(str(export_dir), verbose=False)  # "auto" now traces the reference
        check = subprocess.run(
            [sys.executable, "-m", "tfkit", "check", str(export_dir)], capture_output=True, text=True, check=False
        )
        print(f"5. with a reference the export works; python -m tfkit check exits {check.returncode}:")
        print("\n".join("   " + line for line in check.stdout.splitlines()))


if __name__ == "__main__":
    main()
