"""Benchmark: tfkit's fused attention against keras.ops.dot_product_attention.

Compares, in float32 under tf.function, medians of repeated runs measured
side by side in one process: tfkit.ops.dot_product_attention against
Keras's composite on the TensorFlow backend as it is and compiled with XLA
(jit_compile=True), forward and forward+backward (the gradients of query,
key and value), with each side's peak memory from the BFC allocator's
statistics. Rows: batch 4, 8 heads of 64, T = S in --sizes, causal and not;
a grouped-query row (8 query heads, 2 key and value heads); the decode row
(batch 16, 8 heads, T = 1 against S = the largest size).

`--allocator both` (the default) runs the benchmark once with the default
CPU allocator and once with TF_CPU_ALLOCATOR_USE_BFC=true (which keeps the
statistics peak memory is read from), each in its own process. Prints a
table per allocator and writes JSON (benchmarks/results/attention.json by
default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

import tfkit
from benchmarks.common import time_against_composite

BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"
ALLOCATOR_ENV = {"default": "false", "bfc": "true"}


def rows(sizes: list[int]) -> list[tuple[str, tuple, bool]]:
    """(name, (B, T, S, N, K, H), causal) of each benchmark row."""
    out = []
    for size in sizes:
        out += [
            (f"T=S={size}", (4, size, size, 8, 8, 64), False),
            (f"T=S={size} causal", (4, size, size, 8, 8, 64), True),
        ]
    largest = max(sizes)
    out.append((f"GQA 8/2 T=S={largest}", (4, largest, largest, 8, 2, 64), False))
    out.append((f"decode T=1 S={largest}", (16, 1, largest, 8, 8, 64), False))
    return out


def run(sizes: list[int], repeats: int) -> dict:
    results = []
    for name, (batch, target, source, heads, kv_heads, dim), causal in rows(sizes):
        q = tf.random.normal([batch, target, heads, dim])
        k = tf.random.normal([batch, source, kv_heads, dim])
        v = tf.random.normal([batch, source, kv_heads, dim])
        dy = tf.random.normal(q.shape)

        def ours(q, k, v, causal=causal):
            return tfkit.ops.dot_product_attention(q, k, v, is_causal=causal, backend="compiled")

        def theirs(q, k, v, causal=causal):
            return keras.ops.dot_product_attention(q, k, v, is_causal=causal)

        for result in time_against_composite(name, ours, theirs, (q, k, v), dy, repeats):
            results.append({**result, "shape": [batch, target, source, heads, kv_heads, dim], "causal": causal})
    return {
        "dtype": "float32",
        "repeats": repeats,
        "tensorflow": tf.version.VERSION,
        "cpu_count": os.cpu_count(),
        "allocator": allocator_name(),
        "results": results,
    }


def allocator_name() -> str:
    return "bfc" if os.environ.get(BFC_ENV, "").lower() in ("1", "true") else "default"


def print_table(report: dict) -> None:
    print(f"CPU allocator: {report['allocator']} ({BFC_ENV}={ALLOCATOR_ENV[report['allocator']]})")
    print(f"float32, median of {report['repeats']} runs; composite: keras.ops.dot_product_attention")
    print(
        f"{'row':<22} {'mode':<17} {'tfkit ms':>9} {'composite ms':>13} {'XLA ms':>8} {'vs composite':>13} "
        f"{'vs XLA':>7}  peak MiB tfkit / composite / XLA"
    )
    for r in report["results"]:
        peaks = ""
        if "tfkit_peak_mb" in r:
            peaks = " / ".join(f"{r[f'{side}_peak_mb']:.1f}" for side in ("tfkit", "composite", "xla"))
        print(
            f"{r['op']:<22} {r['mode']:<17} {r['tfkit_ms']:>9.2f} {r['composite_ms']:>13.2f} {r['xla_ms']:>8.2f} "
            f"{r['speedup']:>12.2f}x {r['speedup_vs_xla']:>6.2f}x  {peaks}"
        )


def run_in_subprocess(allocator: str, args: argparse.Namespace) -> dict:
    """One allocator's benchmark in a fresh process (TensorFlow picks the
    allocator when it starts)."""
    command = [sys.executable, __file__, f"--allocator={allocator}", f"--repeats={args.repeats}", "--json=-"]
    command += ["--sizes", *map(str, args.sizes)]
    env = {**os.environ, BFC_ENV: ALLOCATOR_ENV[allocator]}
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output[output.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--allocator", choices=["both", *ALLOCATOR_ENV], default="both")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "attention.json"))
    args = parser.parse_args()
    if args.allocator != "both":
        if allocator_name() != args.allocator:
            parser.error(f"--allocator={args.allocator} needs {BFC_ENV}={ALLOCATOR_ENV[args.allocator]} set")
        report = run(args.sizes, args.repeats)
        if args.json == "-":
            print(json.dumps(report))
            return
        reports = [report]
    else:
        reports = [run_in_subprocess(allocator, args) for allocator in ALLOCATOR_ENV]
    for report in reports:
        print_table(report)
        print()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reports, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
