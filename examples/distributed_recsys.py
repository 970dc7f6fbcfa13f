"""A recommendation model trained on a ParameterServerStrategy cluster, its
embedding tables sharded over the parameter servers, then exported and
served from one process.

Start it on a local cluster (the chief runs this script; the workers and the
parameter servers run `python -m tfkit server`):

  python -m tfkit launch --workers 2 --ps 2 -- python examples/distributed_recsys.py --out build/recsys

On a real cluster the scheduler sets TF_CONFIG and the same script runs on
the chief. Clicks come from a known model: a user and an item embedding
(dimension 4) whose dot product, plus a dense feature, gives the logit.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import tfkit

USERS, ITEMS, HISTORY, BATCH = 5000, 2000, 8, 256


def clicks(seed: int, n: int):
    """(dense, user ids, item history, label): a click when the hidden user
    and item factors agree (the label's logit is known, so is the best loss)."""
    truth = np.random.default_rng(1234)
    user_f, item_f = truth.normal(size=(USERS, 4)), truth.normal(size=(ITEMS, 4))
    rng = np.random.default_rng(seed)
    users = rng.integers(0, USERS, size=(n, 1))
    history = rng.integers(0, ITEMS, size=(n, HISTORY))
    dense = rng.normal(size=(n, 3)).astype("float32")
    logit = (user_f[users[:, 0]] * item_f[history].mean(1)).sum(1) * 2 + dense[:, 0]
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype("float32")[:, None]
    return dense, users.astype("int32"), history.astype("int32"), label


def build_model(num_shards: int) -> keras.Model:
    dense = keras.Input([3], name="numeric")
    user = keras.Input([1], dtype="int32", name="user")
    history = keras.Input([HISTORY], dtype="int32", name="history")
    u = tfkit.layers.EmbeddingBag(USERS, 16, num_shards=num_shards, name="users")(user)
    h = tfkit.layers.EmbeddingBag(ITEMS, 16, combiner="mean", num_shards=num_shards, name="items")(history)
    x = keras.layers.Concatenate()([tfkit.layers.Dense(16, activation="relu")(dense), u, h, u * h])
    x = tfkit.layers.Dense(32, activation="relu")(x)
    return keras.Model([dense, user, history], tfkit.layers.Dense(1)(x))


def make_strategy():
    """ParameterServerStrategy and its coordinator where TF_CONFIG names a
    cluster, else the default strategy and None (this process trains)."""
    if not os.environ.get("TF_CONFIG"):
        print("no TF_CONFIG: training in this process (see the docstring for a cluster)")
        return tf.distribute.get_strategy(), None
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    return strategy, tf.distribute.coordinator.ClusterCoordinator(strategy)


def train_on_cluster(
    build, batch, *, epochs: int, steps: int, loss_fn, learning_rate: float = 0.01, after_epoch=None
) -> keras.Model:
    """A custom training loop (Keras's fit has no ParameterServerStrategy
    support): `build()` makes the model in the strategy's scope, `batch(n)`
    gives step n's (features, label) as NumPy arrays, each step is scheduled
    on a worker, and `after_epoch(model, epoch)` runs on the chief."""
    strategy, coordinator = make_strategy()
    with strategy.scope():
        model = build()
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)

    def replica_step(features, label):
        with tf.GradientTape() as tape:
            loss = loss_fn(label, model(features, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def step(features, label):
        return strategy.run(replica_step, args=(features, label))

    for epoch in range(epochs):
        results = []
        for number in range(steps):
            features, label = tf.nest.map_structure(tf.constant, batch(epoch * steps + number))
            results.append(coordinator.schedule(step, args=(features, label)) if coordinator else step(features, label))
        print(f"epoch {epoch + 1}/{epochs}", flush=True)
        progress, losses = keras.utils.Progbar(steps, stateful_metrics=["loss"]), []
        for number, result in enumerate(results):  # Keras's progress bar, as the steps finish
            losses.append(float(result.fetch() if coordinator else result))
            progress.update(number + 1, [("loss", np.mean(losses))])
        if after_epoch:
            after_epoch(model, epoch)
    return model


def shard_devices(layer) -> str:
    return ", ".join(v.value.device for v in layer.embeddings)


def train(args) -> keras.Model:
    def batch(number):
        dense, user, history, label = clicks(number, BATCH)
        return [dense, user, history], label

    model = train_on_cluster(
        lambda: build_model(args.ps_shards),
        batch,
        epochs=args.epochs,
        steps=args.steps,
        loss_fn=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    if os.environ.get("TF_CONFIG"):
        print("user table shards on", shard_devices(model.get_layer("users")))
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/recsys"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--ps_shards", type=int, default=2, help="row shards per table")
    args = parser.parse_args()
    model = train(args)
    dense, user, history, label = clicks(10**6, 2048)
    # On the chief (Keras's predict, like fit, has no ParameterServerStrategy support).
    logits = model([dense, user, history], training=False).numpy()
    accuracy = float(((logits > 0) == (label > 0.5)).mean())
    print(f"held-out accuracy {accuracy:.3f} (chance is about 0.5)")
    export = args.out / "recsys" / "1"
    model.export(str(export), verbose=False)
    served = tf.saved_model.load(str(export))  # one process, no cluster
    gap = np.abs(served.serve([dense, user, history]).numpy() - logits).max()
    print(f"exported to {export}; served outputs differ by {gap:.2g} from the model's")
    print(f"serve it: python -m tfkit serve {export.parent} --model_name recsys")
    return 0 if accuracy > 0.55 and gap < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
