"""Benchmark: tfkit's fused LayerNorm / RMSNorm against the composite TF ways.

Compares, on one [rows, cols] float32 input under tf.function, medians of
repeated runs measured side by side in this one process:
  - tfkit.ops.layer_norm  vs keras.layers.LayerNormalization
  - tfkit.ops.rms_norm    vs a plain-TF composite RMSNorm
forward and forward+backward, with achieved GB/s next to a NumPy copy's GB/s.
Prints a table and writes JSON (benchmarks/results/norm.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import tfkit


def median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_median_seconds(fn_a, fn_b, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Medians of fn_a and fn_b timed alternately, so drift hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def numpy_copy_gbps(nbytes: int, repeats: int) -> float:
    src = np.random.default_rng(0).random(nbytes // 8)
    dst = np.empty_like(src)
    seconds = median_seconds(lambda: np.copyto(dst, src), repeats)
    return 2 * nbytes / seconds / 1e9


def composite_rms_norm(x, gamma, epsilon=1e-6):
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + epsilon) * gamma


def forward_and_backward(norm, params):
    """A tf.function computing norm(x) and the grads of sum(y * dy)."""

    @tf.function
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = norm(x)
        return tape.gradient(y, [x, *params], output_gradients=dy)

    return step


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
        for mode in ("forward", "forward+backward"):
            if mode == "forward":
                f_ours, f_theirs = tf.function(ours), tf.function(theirs)
                args, passes = (x,), 2  # read x, write y
            else:
                f_ours = forward_and_backward(ours, our_params)
                f_theirs = forward_and_backward(theirs, their_params)
                args, passes = (x, dy), 5  # forward 2 + read x, dy, write dx
            t_ours, t_theirs = paired_median_seconds(
                lambda f=f_ours, a=args: f(*a), lambda f=f_theirs, a=args: f(*a), repeats
            )
            results.append(
                {
                    "op": name,
                    "mode": mode,
                    "baseline": baseline_name,
                    "tfkit_ms": t_ours * 1e3,
                    "baseline_ms": t_theirs * 1e3,
                    "speedup": t_theirs / t_ours,
                    "tfkit_gbps": passes * tensor_bytes / t_ours / 1e9,
                }
            )
    return {
        "shape": [rows, cols],
        "dtype": "float32",
        "repeats": repeats,
        "numpy_copy_gbps": copy_gbps,
        "tensorflow": tf.version.VERSION,
        "cpu_count": os.cpu_count(),
        "results": results,
    }


def print_table(report: dict) -> None:
    copy = report["numpy_copy_gbps"]
    print(f"shape {report['shape']} {report['dtype']}, median of {report['repeats']} runs; NumPy copy: {copy:.1f} GB/s")
    header = f"{'op':<10} {'mode':<17} {'tfkit ms':>9} {'baseline ms':>12} {'speedup':>8} {'GB/s':>6} {'% copy':>7}"
    print(header + "  baseline")
    for r in report["results"]:
        print(
            f"{r['op']:<10} {r['mode']:<17} {r['tfkit_ms']:>9.2f} {r['baseline_ms']:>12.2f} "
            f"{r['speedup']:>7.2f}x {r['tfkit_gbps']:>6.1f} {100 * r['tfkit_gbps'] / copy:>6.0f}%  {r['baseline']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "norm.json")
    args = parser.parse_args()
    report = run(args.rows, args.cols, args.repeats)
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
