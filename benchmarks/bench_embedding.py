"""Benchmark: tfkit's embedding bag against the composite TensorFlow ways.

A [vocab, dim] float32 table (a tf.Variable) and [batch, bag] int32 bags,
"sum" combiner, under tf.function, forward and forward+backward (y and the
gradient of sum(y * dy) for the table, an IndexedSlices), medians of runs
timed in turn in one process, against:
  - tf.nn.embedding_lookup + tf.reduce_sum over the bag,
  - tf.nn.safe_embedding_lookup_sparse on the bags as a SparseTensor,
  - the first compiled with XLA (jit_compile=True).
The process uses TF_CPU_ALLOCATOR_USE_BFC=true, whose statistics
(tf.config.experimental.get_memory_info) give each variant's peak memory:
the most the allocator held during one call beyond what it held before. Writes
benchmarks/results/embedding.json.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import numpy as np
import tensorflow as tf

import tfkit
from benchmarks.common import interleaved_median_seconds, peak_megabytes, write_report

VARIANTS = ("tfkit", "lookup+reduce_sum", "safe_embedding_lookup_sparse", "lookup+reduce_sum XLA")
MODES = ("forward", "forward+backward")


def make_inputs(vocab: int, dim: int, batch: int, bag: int):
    table = tf.Variable(tf.random.uniform([vocab, dim], -0.05, 0.05, seed=1))
    ids = tf.constant(np.random.default_rng(0).integers(0, vocab, size=(batch, bag)), tf.int32)
    sparse = tf.sparse.from_dense(tf.cast(ids, tf.int64) + 1)  # every position, ids shifted off 0 ...
    sparse = tf.SparseTensor(sparse.indices, sparse.values - 1, sparse.dense_shape)  # ... and back
    dy = tf.random.normal([batch, dim], seed=2)
    return table, (ids, sparse, dy)


def forward_fn(variant: str, table: tf.Variable):
    if variant == "tfkit":
        return lambda ids, sparse: tfkit.ops.embedding_bag(ids, table, backend="compiled")
    if variant == "safe_embedding_lookup_sparse":
        return lambda ids, sparse: tf.nn.safe_embedding_lookup_sparse(table, sparse, combiner="sum")
    return lambda ids, sparse: tf.reduce_sum(tf.nn.embedding_lookup(table, ids), axis=1)


def step(variant: str, mode: str, table: tf.Variable):
    forward = forward_fn(variant, table)

    @tf.function(jit_compile=variant.endswith("XLA"))
    def run(ids, sparse, dy):
        with tf.GradientTape() as tape:
            y = forward(ids, sparse)
        if mode == "forward":
            return y
        grad = tape.gradient(y, table, output_gradients=dy)
        return y, grad.values, grad.indices

    return run


def time_all(args) -> list[dict]:
    table, inputs = make_inputs(args.vocab, args.dim, args.batch, args.bag)
    results = []
    for mode in MODES:
        steps = [step(variant, mode, table) for variant in VARIANTS]
        times = interleaved_median_seconds([lambda s=s: s(*inputs) for s in steps], args.repeats)
        ms = dict(zip(VARIANTS, (t * 1e3 for t in times), strict=True))
        peaks = {v: peak_megabytes(lambda s=s: s(*inputs)) for v, s in zip(VARIANTS, steps, strict=True)}
        speedup = {v: ms[v] / ms["tfkit"] for v in VARIANTS[1:]}
        results.append({"mode": mode, "ms": ms, "speedup": speedup, "peak_mib": peaks})
    return results


def intermediate_mib(args) -> dict:
    """What each way must hold besides the table: [batch, bag, dim] for the
    composites' gathered rows, [batch, dim] for the bag, [n, dim] for the
    gradient's rows (every way)."""
    n = args.batch * args.bag
    return {
        "gathered_rows": n * args.dim * 4 / 2**20,
        "bags": args.batch * args.dim * 4 / 2**20,
        "gradient_rows": n * args.dim * 4 / 2**20,
    }


def print_report(report: dict) -> None:
    a = report["args"]
    print(
        f"table [{a['vocab']}, {a['dim']}] float32, bags [{a['batch']}, {a['bag']}] int32, sum; "
        f"median of {a['repeats']} runs, {report['cpu_count']} CPUs"
    )
    print(f"{'mode':<17} {'variant':<30} {'ms':>8} {'tfkit is':>9} {'peak MiB':>9}")
    for r in report["results"]:
        for variant in VARIANTS:
            ratio = "" if variant == "tfkit" else f"{r['speedup'][variant]:.2f}x"
            memory = r["peak_mib"].get(variant, float("nan"))
            print(f"{r['mode']:<17} {variant:<30} {r['ms'][variant]:>8.2f} {ratio:>9} {memory:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--bag", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    results = time_all(args)
    report = {
        "args": {k: getattr(args, k) for k in ("vocab", "dim", "batch", "bag", "repeats")},
        "allocator": "TF_CPU_ALLOCATOR_USE_BFC=" + os.environ["TF_CPU_ALLOCATOR_USE_BFC"],
        "cpu_count": os.cpu_count(),
        "intermediate_mib": intermediate_mib(args),
        "results": results,
    }
    print_report(report)
    write_report("embedding", report)


if __name__ == "__main__":
    main()
