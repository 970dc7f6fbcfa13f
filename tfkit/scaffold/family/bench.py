"""Benchmark: tfkit.ops.${family} against the composite TensorFlow way and the
same composite compiled with XLA, forward and forward+backward, on one
[rows, cols] float32 input, medians timed in turn in one process."""

from __future__ import annotations

import argparse

import tensorflow as tf

import tfkit
from benchmarks.common import compare, print_report, write_report


def composite(x, limit=3.0):
    return x / (1.0 + tf.abs(x) / limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    ours = lambda x: tfkit.ops.${family}(x, backend="compiled")  # noqa: E731
    report = compare("${family}", ours, composite, [args.rows, args.cols], args.repeats)
    print_report(report)
    write_report("${family}", report)


if __name__ == "__main__":
    main()
