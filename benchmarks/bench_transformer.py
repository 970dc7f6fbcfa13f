"""Benchmark: the training step (forward, backward, Adam) of a small
pre-norm transformer encoder built from Keras's own layers and ops, against
the same model built with tfkit's LayerNorm, Dense, GatedDense,
RotaryEmbedding and dot_product_attention, each with and without XLA
(Keras's jit_compile), medians from one process.

The model: 4 blocks of width 256, 4 heads of 64 with rotary embedding on
queries and keys, a SwiGLU feed-forward of 512, then mean pooling and a
10-way classifier; at sequence 128 and 1024, batch 4096 tokens / sequence.
The Keras model's attention is keras.ops.dot_product_attention's composite,
its RoPE keras_hub.layers.RotaryEmbedding (the same formula in plain TF when
keras-hub is not installed). Writes benchmarks/results/transformer.json.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import tfkit
from benchmarks.bench_rotary import baseline as keras_rope
from benchmarks.common import write_report

WIDTH, HEADS, FFN = 256, 4, 512


class Block(keras.layers.Layer):
    """One pre-norm encoder block; `kind` picks Keras's layers or tfkit's."""

    def __init__(self, kind: str, **kwargs):
        super().__init__(**kwargs)
        ours = kind == "tfkit"
        dense = tfkit.layers.Dense if ours else keras.layers.Dense
        norm = tfkit.layers.LayerNorm if ours else keras.layers.LayerNormalization
        self.norm1, self.norm2 = norm(), norm()
        self.qkv = dense(3 * WIDTH)
        self.out = dense(WIDTH)
        self.rope = tfkit.layers.RotaryEmbedding() if ours else keras_rope()[1]
        self.gated = tfkit.layers.GatedDense(FFN) if ours else None
        self.up = None if ours else keras.layers.Dense(2 * FFN)
        self.down = dense(WIDTH)
        self.attention = tfkit.ops.dot_product_attention if ours else keras.ops.dot_product_attention

    def call(self, x):
        batch, seq = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        q, k, v = keras.ops.split(self.qkv(self.norm1(x)), 3, axis=-1)
        q, k, v = (keras.ops.reshape(t, (batch, seq, HEADS, WIDTH // HEADS)) for t in (q, k, v))
        q, k = self.rope(q), self.rope(k)
        attended = self.attention(q, k, v)
        x = x + self.out(keras.ops.reshape(attended, (batch, seq, WIDTH)))
        h = self.norm2(x)
        if self.gated is not None:
            h = self.gated(h)
        else:
            a, b = keras.ops.split(self.up(h), 2, axis=-1)
            h = keras.activations.silu(a) * b
        return x + self.down(h)


def encoder(kind: str, seq: int, blocks: int = 4) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input([seq, WIDTH])
    h = inputs
    for _ in range(blocks):
        h = Block(kind)(h)
    outputs = keras.layers.Dense(10)(keras.ops.mean(h, axis=1))
    return keras.Model(inputs, outputs)


def step_ms(kind: str, jit_compile: bool, x, y, repeats: int) -> float:
    model = encoder(kind, x.shape[1])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit_compile)
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="per batch: the batch is tokens / sequence")
    parser.add_argument("--seqs", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for seq in args.seqs:
        batch = max(1, args.tokens // seq)
        x = rng.normal(size=(batch, seq, WIDTH)).astype("float32")
        y = rng.integers(0, 10, size=batch)
        for jit_compile in (False, True):
            keras_ms = step_ms("keras", jit_compile, x, y, args.repeats)
            tfkit_ms = step_ms("tfkit", jit_compile, x, y, args.repeats)
            results.append({"batch": batch, "seq": seq, "jit_compile": jit_compile, "keras_ms": keras_ms,
                            "tfkit_ms": tfkit_ms, "speedup": keras_ms / tfkit_ms})  # fmt: skip
    print(f"training step, median of {args.repeats}")
    print(f"{'batch':>6} {'seq':>6} {'jit_compile':<12} {'Keras ms':>9} {'tfkit ms':>9} {'tfkit vs Keras':>15}")
    for r in results:
        print(
            f"{r['batch']:>6} {r['seq']:>6} {r['jit_compile']!s:<12} {r['keras_ms']:>9.1f} {r['tfkit_ms']:>9.1f} "
            f"{r['speedup']:>14.2f}x"
        )
    write_report("transformer", {"tokens": args.tokens, "repeats": args.repeats, "cpu_count": os.cpu_count(),
                                 "results": results})  # fmt: skip

if __name__ == "__main__":
    main()
