"""tfkit on tf.distribute, on 127.0.0.1 (every task a process of this machine).

1. ParameterServerStrategy, a chief, 1 worker and 2 parameter servers: a
   scheduled training step (lookup, gradient, Keras SGD) of bags [4096, 32]
   over a [2_000_000, 64] float32 ShardedVariable table (2 shards, one per
   ps), three ways: tfkit.ops.embedding_bag, tf.nn.embedding_lookup +
   reduce_sum, tf.nn.safe_embedding_lookup_sparse. Steps/s (the median
   step, each step scheduled and fetched in turn, interleaved) and the bytes
   each step ships between the tasks, counted from the shapes of the tensors
   that cross a task boundary in each way (see shipped_bytes).
2. MultiWorkerMirroredStrategy: the every-layer model's custom-loop step
   (tests/distribute/multi_worker_train.py) at 1 and 2 workers.

  PYTHONPATH=. python benchmarks/bench_distribute.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB, DIM, BAGS, BAG = 2_000_000, 64, 4096, 32
WAYS = ("tfkit embedding_bag", "embedding_lookup + reduce_sum", "safe_embedding_lookup_sparse")
RESULT = "BENCH_RESULT "


def shipped_bytes(way: str, shards: int = 2) -> int:
    """Bytes one training step sends between the tasks, by the tensors that
    cross: the worker ships ids to every shard's ps; tfkit gets back one
    [bags, dim] partial sum per shard and sends each ps the same-size output
    gradient (the table gradient is made and applied on the ps); the
    composites get back every looked-up row and send back the same rows'
    gradient (an IndexedSlices of [ids, dim] values plus the ids)."""
    ids, row = BAGS * BAG, DIM * 4
    ids_out = ids * 8  # int64 ids, split over the shards
    if way == WAYS[0]:
        splits = shards * (BAGS + 1) * 8
        return ids_out + splits + 2 * shards * BAGS * row
    return ids_out + ids * row + (ids * row + ids_out)


def ps_chief(steps: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import tfkit
    from benchmarks.common import interleaved_median_seconds

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=tf.distribute.experimental.partitioners.FixedShardsPartitioner(2)
    )
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        table = tf.Variable(tf.zeros([VOCAB, DIM]))
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(table.variables)
    scale = tf.constant(np.linspace(-1, 1, DIM), tf.float32)

    def sparse(ids):
        bags = tf.repeat(tf.range(BAGS, dtype=tf.int64), BAG)
        positions = tf.tile(tf.range(BAG, dtype=tf.int64), [BAGS])
        return tf.SparseTensor(tf.stack([bags, positions], 1), tf.reshape(ids, [-1]), [BAGS, BAG])

    lookups = {
        WAYS[0]: lambda ids: tfkit.ops.embedding_bag(ids, table),
        WAYS[1]: lambda ids: tf.reduce_sum(tf.nn.embedding_lookup(table, ids), 1),
        WAYS[2]: lambda ids: tf.nn.safe_embedding_lookup_sparse(table.variables, sparse(ids), combiner="sum"),
    }

    def training_step(lookup):
        def replica_step():
            ids = tf.random.uniform([BAGS, BAG], 0, VOCAB, tf.int64)  # made on the worker
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(lookup(ids) * scale)
            grads = tape.gradient(loss, table.variables)
            optimizer.apply_gradients(zip(grads, table.variables, strict=True))
            return loss

        step = tf.function(lambda: strategy.run(replica_step))
        return lambda: coordinator.schedule(step).fetch()

    steps_fns = [training_step(lookups[way]) for way in WAYS]
    seconds = interleaved_median_seconds(steps_fns, steps, warmup=2)
    devices = [v.device for v in table.variables]
    rows = {
        way: {"steps_per_s": 1 / s, "mb_per_step": shipped_bytes(way) / 2**20}
        for way, s in zip(WAYS, seconds, strict=True)
    }
    return {**rows, "devices": devices}


def mwms_worker(steps: int) -> dict:
    import tensorflow as tf

    from benchmarks.common import median_seconds
    from tests.distribute.multi_worker_train import dataset, training_step
    from tests.layers.every_layer_model import build_model

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build_model()
    step = training_step(strategy, model)
    batches = iter(strategy.experimental_distribute_dataset(dataset(steps + 3).repeat()))
    seconds = median_seconds(lambda: float(step(*next(batches))), steps)
    return {"workers": strategy.num_replicas_in_sync, "step_ms": 1000 * seconds}


def launch(options: list[str], role: str, steps: int, timeout: float = 600) -> dict:
    """Runs this script's `role` on a `tfkit launch` cluster; its first result line."""
    command = [sys.executable, "-m", "tfkit", "launch", *options, "--"]
    command += [sys.executable, str(Path(__file__).resolve()), "--role", role, "--steps", str(steps)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    lines = [line.split(RESULT, 1)[1] for line in process.stdout.splitlines() if RESULT in line]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{role} failed ({process.returncode}):\n{process.stdout[-4000:]}")
    return json.loads(lines[0])


def print_table(ps: dict, mwms: list[dict]) -> None:
    base = ps[WAYS[1]]["steps_per_s"]
    print(f"\nParameterServerStrategy, 1 worker, 2 ps ({ps['devices']}), bags [{BAGS}, {BAG}], table [{VOCAB}, {DIM}]")
    print("| way | steps/s | vs embedding_lookup | MB shipped per step |")
    print("|---|---|---|---|")
    for way in WAYS:
        row = ps[way]
        print(f"| {way} | {row['steps_per_s']:.2f} | {row['steps_per_s'] / base:.2f}x | {row['mb_per_step']:.1f} |")
    print("\nMultiWorkerMirroredStrategy, the every-layer model, global batch 32")
    print("| workers | step ms |")
    print("|---|---|")
    for row in mwms:
        print(f"| {row['workers']} | {row['step_ms']:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--role", choices=["ps_chief", "mwms"], default=None)
    args = parser.parse_args()
    if args.role == "ps_chief":
        print(RESULT + json.dumps(ps_chief(args.steps)), flush=True)
        return 0
    if args.role == "mwms":
        result = mwms_worker(args.steps)
        if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:
            print(RESULT + json.dumps(result), flush=True)
        return 0
    started = time.monotonic()
    ps = launch(["--workers", "1", "--ps", "2"], "ps_chief", args.steps)
    mwms = [launch(["--workers", str(n)], "mwms", args.steps) for n in (1, 2)]
    print_table(ps, mwms)
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
