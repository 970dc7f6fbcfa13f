"""Benchmark: tfkit's fused bias + activation and gated activation against
the composite TensorFlow ways, each also compiled with XLA.

On float32 inputs under tf.function, medians of runs timed in turn in one
process, forward and forward+backward (gradients for x and the bias):
  - bias+GELU, bias+SiLU on [rows, cols]: tfkit.ops.bias_activation vs
    keras.activations.gelu / silu of (x + b)
  - SwiGLU on [rows, 2 * cols]: tfkit.ops.gated_activation vs silu(a) * b
Writes benchmarks/results/activation.json. TF_CPU_ALLOCATOR_USE_BFC=true in
the environment times TensorFlow's BFC allocator instead of its default.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

import tfkit
from benchmarks.common import numpy_copy_gbps, print_report, time_against_composite, write_report


def swiglu_composite(x):
    a, b = tf.split(x, 2, axis=-1)
    return keras.activations.silu(a) * b


def run(rows: int, cols: int, repeats: int) -> dict:
    bias = tf.Variable(tf.random.normal([cols]))
    x, dy = tf.random.normal([rows, cols]), tf.random.normal([rows, cols])
    results = []
    for name, keras_fn in (("gelu", keras.activations.gelu), ("silu", keras.activations.silu)):
        ours = lambda x, act=name: tfkit.ops.bias_activation(x, bias, activation=act, backend="compiled")  # noqa: E731
        theirs = lambda x, fn=keras_fn: fn(x + bias)  # noqa: E731
        results += time_against_composite(f"bias+{name}", ours, theirs, x, dy, repeats, [bias], [bias])
    del x, dy
    x2, dy2 = tf.random.normal([rows, 2 * cols]), tf.random.normal([rows, cols])
    gated = lambda x: tfkit.ops.gated_activation(x, activation="silu", backend="compiled")  # noqa: E731
    results += time_against_composite("SwiGLU", gated, swiglu_composite, x2, dy2, repeats)
    return {
        "shape": [rows, cols],
        "repeats": repeats,
        "numpy_copy_gbps": numpy_copy_gbps(rows * cols * 4, repeats),
        "cpu_count": os.cpu_count(),
        "allocator": "bfc" if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() in ("1", "true") else "default",
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    report = run(args.rows, args.cols, args.repeats)
    print(f"allocator: {report['allocator']}")
    print_report(report)
    write_report("activation", report)


if __name__ == "__main__":
    main()
