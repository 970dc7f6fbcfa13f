"""Timing helpers shared by tfkit's benchmarks: medians timed in turn in one
process, a NumPy copy's bandwidth as the yardstick, the one comparison
every element-wise family reports (tfkit vs the composite vs XLA), and a
benchmark run once per CPU allocator, each in its own process."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

RESULTS = Path(__file__).parent / "results"

# TensorFlow's CPU allocator, chosen when it starts: the default one, or the
# BFC allocator, which keeps the statistics peak memory is read from.
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"
ALLOCATOR_ENV = {"default": "false", "bfc": "true"}


def median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    return interleaved_median_seconds([fn], repeats, warmup)[0]


def interleaved_median_seconds(fns, repeats: int, warmup: int = 3) -> list[float]:
    """Medians of each of fns, timed in turn, so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def numpy_copy_gbps(nbytes: int, repeats: int) -> float:
    src = np.random.default_rng(0).random(nbytes // 8)
    dst = np.empty_like(src)
    seconds = median_seconds(lambda: np.copyto(dst, src), repeats)
    return 2 * nbytes / seconds / 1e9


def forward_and_backward(fn, params=(), jit_compile=False):
    """A tf.function computing y = fn(x) and the grads of sum(y * dy) for x
    and params; x is a tensor or a tuple of them (fn's arguments). It returns
    y with the grads, so the forward runs even where no gradient reads it."""

    @tf.function(jit_compile=jit_compile)
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(*x) if isinstance(x, tuple) else fn(x)
        return y, tape.gradient(y, [x, *params], output_gradients=dy)

    return step


def peak_megabytes(fn) -> float | None:
    """The most memory TensorFlow's CPU allocator held during one call of fn
    above what it held before, in MiB; None unless the allocator keeps
    statistics (TF_CPU_ALLOCATOR_USE_BFC=true)."""
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except ValueError:
        return None
    fn()
    return (tf.config.experimental.get_memory_info("CPU:0")["peak"] - before) / 2**20


def time_against_composite(name, ours, composite, x, dy, repeats, our_params=(), composite_params=()) -> list[dict]:
    """tfkit's `ours` vs `composite` and the XLA-compiled `composite` on x (a
    tensor, or a tuple of the functions' tensor arguments): forward (2 tensor
    passes: x, y) and forward+backward (5: x, y, x, dy, dx), with the
    gradients of sum(y * dy) for x and the params, and each one's peak memory
    where the allocator reports it."""
    inputs = x if isinstance(x, tuple) else (x,)
    tensor_bytes = sum(int(np.prod(t.shape)) * t.dtype.size for t in inputs)
    results = []
    for mode, passes in (("forward", 2), ("forward+backward", 5)):
        if mode == "forward":
            fns = [tf.function(ours), tf.function(composite), tf.function(composite, jit_compile=True)]
            args = inputs
        else:
            fns = [
                forward_and_backward(ours, our_params),
                forward_and_backward(composite, composite_params),
                forward_and_backward(composite, composite_params, jit_compile=True),
            ]
            args = (x, dy)
        calls = [lambda f=f, args=args: f(*args) for f in fns]
        t_ours, t_composite, t_xla = interleaved_median_seconds(calls, repeats)
        peaks = [peak_megabytes(call) for call in calls]
        results.append(
            {
                "op": name,
                "mode": mode,
                "tfkit_ms": t_ours * 1e3,
                "composite_ms": t_composite * 1e3,
                "xla_ms": t_xla * 1e3,
                "speedup": t_composite / t_ours,
                "speedup_vs_xla": t_xla / t_ours,
                "tfkit_gbps": passes * tensor_bytes / t_ours / 1e9,
                **({} if None in peaks else dict(zip(("tfkit_peak_mb", "composite_peak_mb", "xla_peak_mb"), peaks))),
            }
        )
    return results


def compare(name: str, ours, composite, shape, repeats: int) -> dict:
    """`time_against_composite` on one float32 input of `shape`, as a report."""
    x, dy = tf.random.normal(shape), tf.random.normal(shape)
    return {
        "shape": list(shape),
        "repeats": repeats,
        "numpy_copy_gbps": numpy_copy_gbps(int(np.prod(shape)) * 4, repeats),
        "cpu_count": os.cpu_count(),
        "results": time_against_composite(name, ours, composite, x, dy, repeats),
    }


def print_report(report: dict) -> None:
    copy = report["numpy_copy_gbps"]
    print(f"shape {report['shape']} float32, median of {report['repeats']} runs; NumPy copy: {copy:.1f} GB/s")
    print(
        f"{'op':<12} {'mode':<17} {'tfkit ms':>9} {'composite ms':>13} {'XLA ms':>8} {'vs composite':>13} {'vs XLA':>7}"
    )
    for r in report["results"]:
        peaks = ""
        if "tfkit_peak_mb" in r:
            peaks = [r[f"{side}_peak_mb"] for side in ("tfkit", "composite", "xla")]
            peaks = "  peak MiB " + " / ".join(f"{mb:.0f}" for mb in peaks)
        print(
            f"{r['op']:<12} {r['mode']:<17} {r['tfkit_ms']:>9.2f} {r['composite_ms']:>13.2f} {r['xla_ms']:>8.2f} "
            f"{r['speedup']:>12.2f}x {r['speedup_vs_xla']:>6.2f}x{peaks}"
        )


def write_report(name: str, report) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return path


def allocator_name() -> str:
    return "bfc" if os.environ.get(BFC_ENV, "").lower() in ("1", "true") else "default"


def allocator_line(report: dict) -> str:
    return f"CPU allocator: {report['allocator']} ({BFC_ENV}={ALLOCATOR_ENV[report['allocator']]})"


def add_allocator_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--allocator", choices=["both", *ALLOCATOR_ENV], default="both")
    parser.add_argument("--json", default=str(RESULTS / f"{name}.json"))


def run_per_allocator(parser: argparse.ArgumentParser, args: argparse.Namespace, script: str, run, print_table) -> None:
    """`run()` (a report) under the allocator --allocator names, or, with
    --allocator both, under each allocator in a fresh process running
    `script` with the same arguments; prints each report's table and writes
    them as JSON to --json (to stdout with --json=-)."""
    if args.allocator != "both":
        if allocator_name() != args.allocator:
            parser.error(f"--allocator={args.allocator} needs {BFC_ENV}={ALLOCATOR_ENV[args.allocator]} set")
        report = run()
        if args.json == "-":
            print(json.dumps(report))
            return
        reports = [report]
    else:
        reports = [_run_in_subprocess(script, allocator) for allocator in ALLOCATOR_ENV]
    for report in reports:
        print_table(report)
        print()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reports, indent=2))
    print(f"wrote {path}")


def _run_in_subprocess(script: str, allocator: str) -> dict:
    """The script's report under one allocator, from a fresh process given
    this process's arguments."""
    passed, skip = [], False
    for arg in sys.argv[1:]:
        own = arg.split("=")[0] in ("--allocator", "--json")
        if not (own or skip):
            passed.append(arg)
        skip = own and "=" not in arg
    command = [sys.executable, script, *passed, f"--allocator={allocator}", "--json=-"]
    env = {**os.environ, BFC_ENV: ALLOCATOR_ENV[allocator]}
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output[output.index("{") :])
