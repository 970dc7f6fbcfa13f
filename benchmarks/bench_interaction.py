"""Benchmark: tfkit's dot interaction against the composite TFRS runs
(tf.matmul(x, x, transpose_b=True) and a tf.gather of the lower triangle's
flattened positions, precomputed), itself also compiled with XLA.

Features [8192, 27, 128] float32 (DLRM: the bottom MLP's output and 26
embeddings), under tf.function, medians of runs timed in turn in one
process, forward and forward+backward, with each side's peak memory. Runs
with TensorFlow's BFC CPU allocator (TF_CPU_ALLOCATOR_USE_BFC, default true
here), which reports peak memory. Writes benchmarks/results/interaction.json.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import tensorflow as tf

import tfkit
from benchmarks.common import numpy_copy_gbps, print_report, time_against_composite, write_report
from tfkit.ops.interaction import pair_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[8192, 27, 128], help="batch features dim")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    batch, features, _ = args.shape
    x = tf.random.normal(args.shape, seed=0)
    indices = tf.constant(pair_indices(features))
    dy = tf.random.normal([batch, int(indices.shape[0])], seed=2)
    ours = lambda t: tfkit.ops.dot_interaction(t, backend="compiled")  # noqa: E731

    def composite(t):
        gram = tf.matmul(t, t, transpose_b=True)
        return tf.gather(tf.reshape(gram, [-1, features * features]), indices, axis=1)

    report = {
        "shape": f"features {args.shape}",
        "baseline": "tf.matmul + tf.gather of the lower triangle (TFRS)",
        "repeats": args.repeats,
        "allocator": "bfc" if os.environ["TF_CPU_ALLOCATOR_USE_BFC"].lower() in ("1", "true") else "default",
        "numpy_copy_gbps": numpy_copy_gbps(int(tf.size(x)) * 4, args.repeats),
        "cpu_count": os.cpu_count(),
        "results": time_against_composite("dot_interaction", ours, composite, x, dy, args.repeats),
    }
    print_report(report)
    write_report("interaction", report)


if __name__ == "__main__":
    main()
