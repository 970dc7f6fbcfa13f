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
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

import tfkit
from benchmarks.common import (
    add_allocator_arguments,
    allocator_line,
    allocator_name,
    interleaved_median_seconds,
    peak_megabytes,
    run_per_allocator,
    time_against_composite,
)


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
        "layer": layer_steps(repeats),
        "tensorflow": tf.version.VERSION,
        "cpu_count": os.cpu_count(),
        "allocator": allocator_name(),
        "results": results,
    }


def layer_steps(repeats: int, batch: int = 4, seq: int = 1024, heads: int = 8, key_dim: int = 64) -> list[dict]:
    """The training step (forward and backward for the weights, training=True)
    of tfkit's MultiHeadAttention and Keras's with the same weights, self-
    attention with dropout 0.1, without and with XLA."""
    x = tf.random.normal([batch, seq, heads * key_dim])
    layers = {}
    for name, cls in (("tfkit", tfkit.layers.MultiHeadAttention), ("keras", keras.layers.MultiHeadAttention)):
        layers[name] = cls(num_heads=heads, key_dim=key_dim, dropout=0.1, seed=0)
        layers[name](x, x)
    layers["tfkit"].set_weights(layers["keras"].get_weights())
    results = []
    for jit_compile in (False, True):
        calls = [_training_step(layers[name], x, jit_compile) for name in ("tfkit", "keras")]
        t_ours, t_keras = interleaved_median_seconds(calls, repeats)
        results.append(
            {
                "shape": [batch, seq, heads, key_dim],
                "jit_compile": jit_compile,
                "tfkit_ms": t_ours * 1e3,
                "keras_ms": t_keras * 1e3,
                "speedup": t_keras / t_ours,
                "tfkit_peak_mb": peak_megabytes(calls[0]),
                "keras_peak_mb": peak_megabytes(calls[1]),
            }
        )
    return results


def _training_step(layer, x, jit_compile: bool):
    """A call of one training step of `layer` on x."""

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, x, training=True))
        return tape.gradient(loss, layer.trainable_weights)

    return lambda: step(x)


def print_table(report: dict) -> None:
    print(allocator_line(report))
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
    print("MultiHeadAttention training step (dropout 0.1): tfkit's layer vs Keras's, the same weights")
    header = f"{'[B, seq, heads, key_dim]':<24} {'jit_compile':<12} {'tfkit ms':>9} {'Keras ms':>9} {'vs Keras':>9}"
    print(header + "  peak MiB tfkit / Keras")
    for r in report["layer"]:
        peaks = "" if r["tfkit_peak_mb"] is None else f"{r['tfkit_peak_mb']:.1f} / {r['keras_peak_mb']:.1f}"
        print(
            f"{r['shape']!s:<24} {r['jit_compile']!s:<12} {r['tfkit_ms']:>9.2f} {r['keras_ms']:>9.2f} "
            f"{r['speedup']:>8.2f}x  {peaks}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=10)
    add_allocator_arguments(parser, "attention")
    args = parser.parse_args()
    run_per_allocator(parser, args, __file__, lambda: run(args.sizes, args.repeats), print_table)


if __name__ == "__main__":
    main()
