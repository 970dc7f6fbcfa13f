"""Benchmark: tfkit's bilinear resampler against the tf.gather_nd bilinear
composite (tfkit's reference, the same math as TensorFlow ops), itself also
compiled with XLA.

Images [16, 128, 128, 32] float32 sampled at a [16, 128, 128, 2] warp (each
pixel's own position moved by up to 3 pixels, so some points fall outside),
under tf.function, medians of runs timed in turn in one process, forward and
forward+backward (gradients for both data and warp), with each side's peak
memory. Runs with TensorFlow's BFC CPU allocator (TF_CPU_ALLOCATOR_USE_BFC,
default true here), which reports peak memory. Writes
benchmarks/results/resampling.json.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import tensorflow as tf

import tfkit
from benchmarks.common import numpy_copy_gbps, print_report, time_against_composite, write_report


def shifted_grid(batch: int, height: int, width: int, shift: float) -> tf.Tensor:
    rows, cols = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    grid = tf.stack([cols, rows], axis=-1)[tf.newaxis]
    return grid + tf.random.uniform([batch, height, width, 2], -shift, shift, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 128, 128, 32], help="batch height width channels")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    batch, height, width, channels = args.shape
    data = tf.random.normal(args.shape, seed=0)
    warp = shifted_grid(batch, height, width, 3.0)
    dy = tf.random.normal([batch, height, width, channels], seed=2)
    ours = lambda d, w: tfkit.ops.resampler(d, w, backend="compiled")  # noqa: E731
    composite = lambda d, w: tfkit.ops.resampler(d, w, backend="reference")  # noqa: E731
    report = {
        "shape": f"data {args.shape}, warp {[batch, height, width, 2]}",
        "baseline": "tf.gather_nd bilinear composite",
        "repeats": args.repeats,
        "allocator": "bfc" if os.environ["TF_CPU_ALLOCATOR_USE_BFC"].lower() in ("1", "true") else "default",
        "numpy_copy_gbps": numpy_copy_gbps(int(tf.size(data)) * 4, args.repeats),
        "cpu_count": os.cpu_count(),
        "results": time_against_composite("resampler", ours, composite, (data, warp), dy, args.repeats),
    }
    print_report(report)
    write_report("resampling", report)


if __name__ == "__main__":
    main()
