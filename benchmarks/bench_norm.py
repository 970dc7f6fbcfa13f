"""Benchmark: tfkit's fused LayerNorm / RMSNorm against the composite TF ways.

Compares, on one [rows, cols] float32 input under tf.function, medians of
repeated runs measured side by side in one process:
  - tfkit.ops.layer_norm  vs keras.layers.LayerNormalization
  - tfkit.ops.rms_norm    vs a plain-TF composite RMSNorm
each baseline both as it is and compiled with XLA (jit_compile=True), forward
and forward+backward, with achieved GB/s next to a NumPy copy's GB/s.

TensorFlow's CPU allocator matters here: by default a large output gets fresh
pages on every call, and the page faults can cost more than the kernel.
`--allocator both` (the default) runs the benchmark once with the default
allocator and once with TF_CPU_ALLOCATOR_USE_BFC=true, each in its own
process. Prints a table per allocator and writes JSON
(benchmarks/results/norm.json by default).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

import tfkit
from benchmarks.common import (
    add_allocator_arguments,
    allocator_line,
    allocator_name,
    numpy_copy_gbps,
    run_per_allocator,
    time_against_composite,
)


def composite_rms_norm(x, gamma, epsilon=1e-6):
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + epsilon) * gamma


def cases(cols: int):
    gamma = tf.Variable(tf.random.normal([cols]))
    beta = tf.Variable(tf.random.normal([cols]))
    keras_ln = keras.layers.LayerNormalization(epsilon=1e-5)
    keras_ln.build([None, cols])
    ln = lambda x: tfkit.ops.layer_norm(x, gamma, beta, backend="compiled")  # noqa: E731
    rms = lambda x: tfkit.ops.rms_norm(x, gamma, backend="compiled")  # noqa: E731
    plain_rms = lambda x: composite_rms_norm(x, gamma)  # noqa: E731
    return [
        ("LayerNorm", ln, [gamma, beta], "keras.layers.LayerNormalization", keras_ln, keras_ln.trainable_variables),
        ("RMSNorm", rms, [gamma], "plain-TF composite RMSNorm", plain_rms, [gamma]),
    ]


def run(rows: int, cols: int, repeats: int) -> dict:
    x = tf.random.normal([rows, cols])
    dy = tf.random.normal([rows, cols])
    tensor_bytes = rows * cols * 4
    copy_gbps = numpy_copy_gbps(tensor_bytes, repeats)
    results = []
    for name, ours, our_params, baseline_name, theirs, their_params in cases(cols):
        for result in time_against_composite(name, ours, theirs, x, dy, repeats, our_params, their_params):
            results.append({**result, "baseline": baseline_name})
    return {
        "shape": [rows, cols],
        "dtype": "float32",
        "repeats": repeats,
        "numpy_copy_gbps": copy_gbps,
        "tensorflow": tf.version.VERSION,
        "cpu_count": os.cpu_count(),
        "allocator": allocator_name(),
        "results": results,
    }


def print_table(report: dict) -> None:
    copy = report["numpy_copy_gbps"]
    print(allocator_line(report))
    print(f"shape {report['shape']} {report['dtype']}, median of {report['repeats']} runs; NumPy copy: {copy:.1f} GB/s")
    header = (
        f"{'op':<10} {'mode':<17} {'tfkit ms':>9} {'composite ms':>13} {'XLA ms':>8} "
        f"{'vs composite':>13} {'vs XLA':>7} {'GB/s':>6} {'% copy':>7}"
    )
    print(header + "  composite")
    for r in report["results"]:
        print(
            f"{r['op']:<10} {r['mode']:<17} {r['tfkit_ms']:>9.2f} {r['composite_ms']:>13.2f} "
            f"{r['xla_ms']:>8.2f} {r['speedup']:>12.2f}x {r['speedup_vs_xla']:>6.2f}x "
            f"{r['tfkit_gbps']:>6.1f} {100 * r['tfkit_gbps'] / copy:>6.0f}%  {r['baseline']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    add_allocator_arguments(parser, "norm")
    args = parser.parse_args()
    run_per_allocator(parser, args, __file__, lambda: run(args.rows, args.cols, args.repeats), print_table)


if __name__ == "__main__":
    main()
