"""A recommendation model (an embedding bag over a table in two row shards,
a tfkit Dense MLP) trained with ClusterCoordinator.schedule on the
ParameterServerStrategy cluster of TF_CONFIG (run as the chief under
`tfkit launch --workers W --ps 2`), or without TF_CONFIG in one process;
writes OUT/<name>.npz (weights, losses) and OUT/<name>.json (the shards' devices).

  python -m tests.distribute.ps_train OUT NAME [--layout sharded|whole] [--steps N] [--check_lookup]
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import tfkit

VOCAB, DIM, BAG, BATCH, SHARDS = 1000, 8, 6, 64, 2


def build_model(num_shards) -> keras.Model:
    ids = keras.Input([BAG], dtype="int32")
    h = tfkit.layers.EmbeddingBag(VOCAB, DIM, combiner="mean", num_shards=num_shards, name="bag")(ids)
    h = tfkit.layers.Dense(16, activation="relu")(h)
    return keras.Model(ids, tfkit.layers.Dense(1)(h))


def initial_weights(layout: str) -> list[np.ndarray]:
    """The sharded model's seeded weights; for the whole layout its shards joined."""
    keras.utils.set_random_seed(0)
    weights = build_model(SHARDS).get_weights()
    return weights if layout == "sharded" else [np.concatenate(weights[:SHARDS]), *weights[SHARDS:]]


def batch(step: int):
    """A known target: the sum of a hidden score per id, so the loss can fall."""
    rng = np.random.default_rng(step)
    ids = rng.integers(0, VOCAB, size=(BATCH, BAG)).astype("int32")
    score = np.sin(np.arange(VOCAB)).astype("float32")
    return tf.constant(ids), tf.constant(3 * score[ids].mean(1, keepdims=True))


def check_lookup(strategy, coordinator) -> float:
    """The largest gap between the bags and table gradients over the ps-sharded
    table and the unsharded op on the joined table, every combiner, weighted
    or not, dense and ragged bags."""
    with strategy.scope():
        shards = [tf.Variable(tf.random.stateless_normal([rows, DIM], (1, n))) for n, rows in enumerate([501, 499])]
    whole = tf.Variable(tf.concat([s.read_value() for s in shards], 0))
    rng = np.random.default_rng(7)
    dense = tf.constant(rng.integers(0, VOCAB, size=(5, 4)), tf.int64)
    ragged = tf.ragged.constant([[3, 999, 500], [], [501, 0], [499, 499, 12, 700]], tf.int64)
    worst = 0.0
    for ids in (dense, ragged):
        w = (ids * 0 + 1) if isinstance(ids, tf.Tensor) else ids.with_flat_values(tf.ones_like(ids.flat_values))
        w = (
            tf.cast(w, tf.float32)
            if isinstance(w, tf.Tensor)
            else w.with_flat_values(tf.cast(w.flat_values, tf.float32) * 1.5)
        )
        for combiner in tfkit.ops.embedding.COMBINERS:
            for weights in (None, w):

                def lookup(table, grads_of, ids=ids, weights=weights, combiner=combiner):
                    with tf.GradientTape() as tape:
                        y = tfkit.ops.embedding_bag(ids, table, weights, combiner)
                        loss = tf.reduce_sum(y * tf.range(DIM, dtype=tf.float32))
                    return y, [tf.convert_to_tensor(g) for g in tape.gradient(loss, grads_of)]

                remote = coordinator.schedule(tf.function(lambda: lookup(shards, shards))).fetch()
                local = lookup(whole, [whole])
                worst = max(worst, np.abs(remote[0] - local[0].numpy()).max())
                worst = max(worst, np.abs(np.concatenate(remote[1]) - local[1][0].numpy()).max())
    return float(worst)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("name")
    parser.add_argument("--layout", choices=["sharded", "whole"], default="sharded")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--check_lookup", action="store_true")
    args = parser.parse_args()
    clustered = bool(os.environ.get("TF_CONFIG"))
    if clustered:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
        coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    else:
        strategy, coordinator = tf.distribute.get_strategy(), None
    start = initial_weights(args.layout)
    with strategy.scope():
        model = build_model(SHARDS if args.layout == "sharded" else None)
        model.set_weights(start)
        optimizer = keras.optimizers.Adam(0.05)
        optimizer.build(model.trainable_variables)

    def replica_step(ids, target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(ids, training=True) - target))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def step(ids, target):
        return strategy.run(replica_step, args=(ids, target))  # a Keras optimizer needs a replica context

    losses = []
    for number in range(args.steps):
        ids, target = batch(number)
        if coordinator is None:
            losses.append(float(step(ids, target)))
        else:
            losses.append(float(coordinator.schedule(step, args=(ids, target)).fetch()))  # in order
    table = model.get_layer("bag").embeddings
    devices = [v.value.device for v in table] if isinstance(table, list) else [table.value.device]
    report = {"devices": devices, "losses": losses}
    if args.check_lookup and coordinator is not None:
        report["lookup_gap"] = check_lookup(strategy, coordinator)
    print(args.name, json.dumps(report), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"{args.name}.npz", *model.get_weights())
    (args.out / f"{args.name}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
