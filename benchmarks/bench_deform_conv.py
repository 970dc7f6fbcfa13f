"""Benchmark: tfkit's deform_conv2d against the composite way (tfkit's
compiled resampler gathering every tap's bilinear samples, then one
tf.einsum with the kernel), that composite compiled with XLA (where the
resampler runs its pure-TensorFlow reference), and tf.nn.conv2d (what the
deformability costs).

x [8, 64, 64, 64] float32, a 3 x 3 kernel to 64 filters, "valid" padding,
offsets of up to two pixels and a mask in (0, 1), under tf.function, medians
of runs timed in turn in one process, forward and forward+backward (the
gradients of x, offsets, mask and kernel), with each side's peak memory.
Runs with TensorFlow's BFC CPU allocator (TF_CPU_ALLOCATOR_USE_BFC, default
true here), which reports peak memory. Writes
benchmarks/results/deform_conv.json.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import tensorflow as tf

import tfkit
from benchmarks.common import numpy_copy_gbps, print_report, time_against_composite, write_report
from tfkit.ops.deform_conv import deform_conv_composite

ATTRS = {"strides": [1, 1], "padding": "valid", "dilations": [1, 1], "groups": 1, "offset_groups": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 64, 64, 64], help="batch height width channels")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    batch, height, width, channels = args.shape
    out_h, out_w = height - 2, width - 2
    x = tf.random.normal(args.shape, seed=0)
    kernel = tf.random.normal([3, 3, channels, args.filters], stddev=0.05, seed=1)
    offsets = tf.random.uniform([batch, out_h, out_w, 18], -2.0, 2.0, seed=2)
    mask = tf.random.uniform([batch, out_h, out_w, 9], seed=3)
    dy = tf.random.normal([batch, out_h, out_w, args.filters], seed=4)

    def ours(x, offsets, mask, kernel):
        return tfkit.ops.deform_conv2d(x, offsets, kernel, mask, **ATTRS, backend="compiled")

    def composite(x, offsets, mask, kernel):
        return deform_conv_composite(x, offsets, mask, kernel, **ATTRS, sample=tfkit.ops.resampler)

    results = time_against_composite("deform_conv2d", ours, composite, (x, offsets, mask, kernel), dy, args.repeats)
    conv = time_against_composite(
        "vs conv2d",
        ours,
        lambda x, offsets, mask, kernel: tf.nn.conv2d(x, kernel, 1, "VALID"),
        (x, offsets, mask, kernel),
        dy,
        args.repeats,
    )
    report = {
        "shape": f"x {args.shape}, kernel [3, 3, {channels}, {args.filters}]",
        "baseline": "tfkit.ops.resampler gathers + tf.einsum; also tf.nn.conv2d (no deformation)",
        "repeats": args.repeats,
        "allocator": "bfc" if os.environ["TF_CPU_ALLOCATOR_USE_BFC"].lower() in ("1", "true") else "default",
        "numpy_copy_gbps": numpy_copy_gbps(int(tf.size(x)) * 4, args.repeats),
        "cpu_count": os.cpu_count(),
        "results": results + conv,
    }
    print_report(report)
    write_report("deform_conv", report)


if __name__ == "__main__":
    main()
