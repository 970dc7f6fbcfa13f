"""A DLRM click model with tfkit layers, against the same model in Keras layers.

A bottom MLP (tfkit.layers.Dense) on the dense features, one ragged
multi-hot bag per categorical feature (tfkit.layers.EmbeddingBag, mean),
tfkit.layers.DotInteraction over [bottom output, bags], concatenated with the
bottom output, a top MLP and a sigmoid click probability. Clicks come from a
known latent-factor model (a fixed seed, nothing downloaded), so the best
achievable AUC, that of the true probabilities on the held-out set, is known.

  python examples/recsys_dlrm.py [--quick] [--out DIR]
  python -m tfkit launch --workers 2 --ps 2 -- python examples/recsys_dlrm.py --distributed [--quick]

Single machine: both models are trained with model.fit from the same initial
weights, their training steps timed with and without XLA, then the tfkit
model is saved (.keras), exported, checked (`tfkit check`), served (`tfkit
serve`) and queried over REST and gRPC. With --distributed the tables are
sharded over the parameter servers and trained with a custom loop (Keras's
fit has no ParameterServerStrategy support); the rest is the same.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import end_to_end
import keras
import numpy as np
import tensorflow as tf
from distributed_recsys import shard_devices, train_on_cluster
from sklearn.metrics import roc_auc_score

import tfkit
from tfkit.ops.interaction import pair_indices

DENSE, VOCABS, MAX_BAG, DIM, FACTORS = 8, (1000, 500, 200, 100), 5, 16, 4
BOTTOM, TOP = (64, DIM), (64, 32)
SETTINGS = {  # rows for training, epochs, batch, timed steps per round
    "quick": {"rows": 65536, "epochs": 3, "batch": 512, "timed": 15},
    "full": {"rows": 524288, "epochs": 4, "batch": 512, "timed": 60},
}
HELD_OUT, MODEL_NAME, LEARNING_RATE = 16384, "dlrm", 3e-3


# --- Data: clicks from a known latent-factor model ---------------------------


def truth(seed: int = 1234) -> dict:
    """The hidden model: per-category factors, a dense projection and weights."""
    rng = np.random.default_rng(seed)
    return {
        "tables": [rng.normal(size=(v, FACTORS)) for v in VOCABS],
        "project": rng.normal(scale=0.35, size=(DENSE, FACTORS)),
        "weights": rng.normal(scale=0.3, size=DENSE),
    }


def clicks(hidden: dict, rows: int, seed: int):
    """(features, label, true click probability): bags padded with -1, popular
    ids more frequent; the logit is the dense term plus 0.4 x every pair's dot
    product of the factor vectors (the dense one and the bags' means)."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, DENSE)).astype("float32")
    features, vectors = {"numeric": dense}, [dense @ hidden["project"]]
    for t, table in enumerate(hidden["tables"]):
        lengths = rng.integers(1, MAX_BAG + 1, size=(rows, 1))
        ids = (len(table) * rng.uniform(size=(rows, MAX_BAG)) ** 2).astype("int32")
        present = np.arange(MAX_BAG) < lengths
        features[f"cat{t}"] = np.where(present, ids, -1).astype("int32")
        vectors.append((table[ids] * present[..., None]).sum(1) / lengths)
    pairs = sum((vectors[i] * vectors[j]).sum(1) for i in range(len(vectors)) for j in range(i))
    logit = dense @ hidden["weights"] + 0.4 * pairs - 0.5
    probability = 1 / (1 + np.exp(-logit))
    label = (rng.uniform(size=rows) < probability).astype("float32")[:, None]
    return features, label, probability


# --- The Keras-layer counterparts of the tfkit layers ------------------------


@keras.saving.register_keras_serializable(package="recsys_dlrm")
class RaggedIds(keras.layers.Layer):
    """Padded ids [batch, bag] (-1 after the last id) to a ragged [batch, None]."""

    def call(self, ids):
        return tf.RaggedTensor.from_tensor(ids, padding=-1)

    def compute_output_spec(self, ids):
        return keras.KerasTensor((ids.shape[0], None), dtype=ids.dtype, ragged=True)


@keras.saving.register_keras_serializable(package="recsys_dlrm")
class MaskedMeanBag(keras.layers.Layer):
    """keras.layers.Embedding on the padded ids and the mean over the present ones."""

    def __init__(self, input_dim: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.embedding = keras.layers.Embedding(input_dim, output_dim)

    def call(self, ids):
        present = tf.cast(ids >= 0, self.compute_dtype)[..., None]
        rows = self.embedding(tf.maximum(ids, 0))
        return tf.reduce_sum(rows * present, 1) / tf.maximum(tf.reduce_sum(present, 1), 1.0)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="recsys_dlrm")
class GramInteraction(keras.layers.Layer):
    """TFRS's composite dot interaction: x x^T and a gather of its lower triangle."""

    def call(self, inputs):
        x = tf.stack(inputs, axis=1)
        gram = tf.matmul(x, x, transpose_b=True)
        count = len(inputs)
        return tf.gather(tf.reshape(gram, [-1, count * count]), pair_indices(count), axis=1)


def build_model(flavor: str, num_shards: int | None = None) -> keras.Model:
    """The DLRM, with tfkit layers ("tfkit") or Keras layers ("keras")."""
    dense_layer = tfkit.layers.Dense if flavor == "tfkit" else keras.layers.Dense
    inputs = {"numeric": keras.Input([DENSE], name="numeric")}
    inputs |= {f"cat{t}": keras.Input([MAX_BAG], dtype="int32", name=f"cat{t}") for t in range(len(VOCABS))}
    x = inputs["numeric"]
    for units in BOTTOM:
        x = dense_layer(units, activation="relu")(x)
    bags = []
    for t, vocabulary in enumerate(VOCABS):
        ids = inputs[f"cat{t}"]
        if flavor == "tfkit":
            bag = tfkit.layers.EmbeddingBag(vocabulary, DIM, combiner="mean", num_shards=num_shards, name=f"table{t}")
            bags.append(bag(RaggedIds()(ids)))
        else:
            bags.append(MaskedMeanBag(vocabulary, DIM, name=f"table{t}")(ids))
    interaction = tfkit.layers.DotInteraction() if flavor == "tfkit" else GramInteraction()
    h = keras.layers.Concatenate()([x, interaction([x, *bags])])
    for units in TOP:
        h = dense_layer(units, activation="relu")(h)
    return keras.Model(inputs, dense_layer(1, activation="sigmoid", name="click")(h), name=f"dlrm_{flavor}")


# --- Training and timing with model.fit ---------------------------------------


def compiled(model: keras.Model, jit: bool) -> keras.Model:
    loss = keras.losses.BinaryCrossentropy()
    return end_to_end.compiled(model, jit, LEARNING_RATE, loss, metrics=[keras.metrics.AUC(name="auc")])


def fit(model: keras.Model, train, held_out, setting: dict) -> list[float]:
    """model.fit with Keras's progress bar; the held-out AUC after each epoch."""
    print(f"\n{model.name}: model.fit, {setting['epochs']} epochs of {setting['rows'] // setting['batch']} steps")
    history = compiled(model, jit=False).fit(
        *train, batch_size=setting["batch"], epochs=setting["epochs"], validation_data=held_out[:2], verbose=1
    )
    return history.history["val_auc"]


def timed_models(initial: list, train, setting: dict) -> dict:
    """Training steps/s of each (flavor, XLA) model, all from the same weights."""
    batches = tf.data.Dataset.from_tensor_slices(train).batch(setting["batch"], drop_remainder=True)
    models = {}
    for flavor in end_to_end.FLAVORS:
        for jit in (False, True):
            models[flavor, jit] = compiled(build_model(flavor), jit)
            models[flavor, jit].set_weights(initial)
    return end_to_end.steps_per_second(models, batches, setting["timed"])


def print_tables(reached: dict, best: float, rates: dict) -> None:
    fraction = {name: f"{(value - 0.5) / (best - 0.5):.2f}" for name, value in reached.items()}
    end_to_end.print_metric_table(
        "held-out AUC",
        reached,
        {"best achievable": dict.fromkeys(reached, f"{best:.4f}"), "fraction of the way from 0.5": fraction},
    )
    end_to_end.print_speed_table(rates)


def auc(model: keras.Model, held_out) -> float:
    return float(roc_auc_score(held_out[1], end_to_end.predict(model, held_out[0])))


# --- The two ways to run ------------------------------------------------------


def single_machine(train, held_out, setting: dict):
    keras.utils.set_random_seed(0)
    ours, theirs = build_model("tfkit"), build_model("keras")
    initial = end_to_end.same_initial_weights(ours, theirs)
    curves = {"tfkit": fit(ours, train, held_out, setting), "Keras layers": fit(theirs, train, held_out, setting)}
    reached = {"tfkit": auc(ours, held_out), "Keras layers": auc(theirs, held_out)}
    print("\ntiming training steps (model.fit, the same weights), with and without XLA ...")
    return ours, curves, reached, timed_models(initial, train, setting)


def distributed(train, held_out, setting: dict):
    features, label = train
    steps = setting["rows"] // setting["batch"]
    curve = []

    def batch(number):
        rows = slice((number % steps) * setting["batch"], (number % steps + 1) * setting["batch"])
        return {name: value[rows] for name, value in features.items()}, label[rows]

    def after_epoch(model, epoch):
        curve.append(auc(model, held_out))
        print(f"held-out AUC after epoch {epoch + 1}: {curve[-1]:.4f}", flush=True)

    keras.utils.set_random_seed(0)
    model = train_on_cluster(
        lambda: build_model("tfkit", num_shards=2),
        batch,
        epochs=setting["epochs"],
        steps=steps,
        loss_fn=keras.losses.BinaryCrossentropy(),
        learning_rate=LEARNING_RATE,
        after_epoch=after_epoch,
    )
    print("table0 shards on", shard_devices(model.get_layer("table0")))
    return model, {"tfkit, sharded": curve}, {"tfkit, sharded": curve[-1]}, {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/examples/recsys_dlrm"))
    parser.add_argument("--quick", action="store_true", help="a small setting (about a minute)")
    parser.add_argument("--distributed", action="store_true", help="under `tfkit launch --workers 2 --ps 2`")
    args = parser.parse_args()
    setting = SETTINGS["quick" if args.quick else "full"]
    args.out.mkdir(parents=True, exist_ok=True)
    hidden = truth()
    train = clicks(hidden, setting["rows"], seed=1)[:2]
    held_out = clicks(hidden, HELD_OUT, seed=2)
    best = float(roc_auc_score(held_out[1], held_out[2]))
    print(f"{setting['rows']} training rows, {HELD_OUT} held out; best achievable AUC {best:.4f}")
    run = distributed if args.distributed else single_machine
    model, curves, reached, rates = run(train, held_out, setting)
    end_to_end.plot_curves(args.out / "auc.png", curves, "held-out AUC", "DLRM on synthetic clicks", best)
    served = end_to_end.save_export_serve(model, args.out, MODEL_NAME, {k: v[:8] for k, v in held_out[0].items()})
    print_tables(reached, best, rates)
    return 0 if served and min(reached.values()) > 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
