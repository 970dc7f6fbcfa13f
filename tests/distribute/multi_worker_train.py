"""Trains the every-layer model for a few steps under MultiWorkerMirroredStrategy
(from TF_CONFIG, as `tfkit launch` sets it) or, without TF_CONFIG, in one
process with the same global batch; writes the weights to OUT/<task>.npz.

  python -m tests.distribute.multi_worker_train OUT [--fit] [--steps N]
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

from tests.layers.every_layer_model import build_model, toy_data

GLOBAL_BATCH = 32


def dataset(steps: int) -> tf.data.Dataset:
    x, y = toy_data(GLOBAL_BATCH * steps)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)


def train_loop(strategy: tf.distribute.Strategy, model: keras.Model, steps: int) -> list[float]:
    """A custom loop: strategy.run, a Keras optimizer, a distributed dataset."""
    step = training_step(strategy, model)
    return [float(step(x, y)) for x, y in strategy.experimental_distribute_dataset(dataset(steps))]


def training_step(strategy: tf.distribute.Strategy, model: keras.Model):
    """The step (x, y) -> the global batch's mean loss: SGD on the all-reduced gradients."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    with strategy.scope():
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(loss_fn(y, model(x, training=True)), global_batch_size=GLOBAL_BATCH)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def step(x, y):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

    return step


def train_fit(strategy: tf.distribute.Strategy, model: keras.Model, steps: int) -> list[float]:
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    history = model.fit(dataset(steps), epochs=1, verbose=0)
    return history.history["loss"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    if config:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = f"{config['task']['type']}{config['task']['index']}"
    else:
        strategy, task = tf.distribute.get_strategy(), "single"
    with strategy.scope():
        model = build_model()
    losses = (train_fit if args.fit else train_loop)(strategy, model, args.steps)
    print(task, "replicas", strategy.num_replicas_in_sync, "losses", " ".join(f"{v:.6f}" for v in losses))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"{task}.npz", *model.get_weights())
    return 0


if __name__ == "__main__":
    sys.exit(main())
