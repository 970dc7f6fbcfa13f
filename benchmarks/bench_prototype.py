"""Benchmark: the eager per-call overhead of prototype ops.

Times, on a small [8, 16] float32 input (so the call overhead dominates),
medians of blocks of calls measured in turn in one process:
  - a NumPy prototype (tfkit.prototype.op) vs the raw tf.numpy_function call,
  - a TensorFlow-body prototype vs the raw tf.py_function call,
  - a compiled op's raw call (Tfkit>RMSNorm) for scale.
Target: the prototype wrapper adds at most 20% to the raw call.
Prints a table and writes JSON (benchmarks/results/prototype.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import tfkit


def softclip_numpy(x, *, limit=2.0):
    return limit * np.tanh(x / limit)


def softclip_tensorflow(x, *, limit=2.0):
    return limit * tf.tanh(x / limit)


def block_medians_us(fns: dict, calls: int, blocks: int) -> dict:
    """Median over blocks of the mean time of one call, fns timed in turn."""
    samples = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(calls):
            fn()
    for _ in range(blocks):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=21)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "prototype.json")
    args = parser.parse_args()

    x = tf.random.normal([8, 16])
    numpy_op = tfkit.prototype.op(softclip_numpy)
    tensorflow_op = tfkit.prototype.op(softclip_tensorflow, body="tensorflow")
    library = tfkit.load_library()
    gamma = tf.ones([16])
    fns = {
        "raw tf.numpy_function": lambda: tf.numpy_function(softclip_numpy, [x], tf.float32),
        "prototype, body=numpy": lambda: numpy_op(x, limit=2.0),
        "raw tf.py_function": lambda: tf.py_function(softclip_tensorflow, [x], tf.float32),
        "prototype, body=tensorflow": lambda: tensorflow_op(x, limit=2.0),
        "compiled op (Tfkit>RMSNorm, raw)": lambda: library.tfkit_rms_norm(x, gamma, epsilon=1e-6, U=tf.float32),
    }
    medians = block_medians_us(fns, args.calls, args.blocks)
    overhead = {
        "numpy": medians["prototype, body=numpy"] / medians["raw tf.numpy_function"] - 1,
        "tensorflow": medians["prototype, body=tensorflow"] / medians["raw tf.py_function"] - 1,
    }
    print(f"eager call overhead, [8, 16] float32, median of {args.blocks} blocks of {args.calls} calls")
    for name, us in medians.items():
        print(f"  {name:<34} {us:8.1f} us")
    for body, extra in overhead.items():
        print(f"  prototype wrapper, body={body:<11} {100 * extra:+7.1f}% over the raw call (target <= +20%)")
    report = {"medians_us": medians, "wrapper_overhead": overhead, "cpu_count": os.cpu_count()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
