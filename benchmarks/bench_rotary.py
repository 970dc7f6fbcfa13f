"""Benchmark: tfkit's rotary position embedding against keras_hub's
RotaryEmbedding layer (the composite TensorFlow way; the same formula in
plain TF when keras-hub is not installed), each also compiled with XLA.

On a [batch, seq, heads, dim] float32 input under tf.function, medians of
runs timed in turn in one process, forward and forward+backward. Writes
benchmarks/results/rotary.json.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

import tfkit
from benchmarks.common import numpy_copy_gbps, print_report, time_against_composite, write_report
from tfkit.ops import rotary


def baseline():
    """keras_hub's layer, else the same formula as plain TF ops."""
    try:
        from tests.ops.keras_hub_rope import keras_hub_rotary_embedding

        layer = keras_hub_rotary_embedding()
    except ImportError:
        layer = None
    if layer is not None:
        return "keras_hub.layers.RotaryEmbedding", layer()
    return "plain-TF RoPE", lambda x: rotary.rotary_embedding(x, backend="reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 512, 16, 64])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    x, dy = tf.random.normal(args.shape), tf.random.normal(args.shape)
    name, theirs = baseline()
    ours = lambda x: tfkit.ops.rotary_embedding(x, backend="compiled")  # noqa: E731
    report = {
        "shape": args.shape,
        "baseline": name,
        "repeats": args.repeats,
        "numpy_copy_gbps": numpy_copy_gbps(int(tf.size(x)) * 4, args.repeats),
        "cpu_count": os.cpu_count(),
        "results": time_against_composite("RoPE", ours, theirs, x, dy, args.repeats),
    }
    print(f"baseline: {name}")
    print_report(report)
    write_report("rotary", report)


if __name__ == "__main__":
    main()
