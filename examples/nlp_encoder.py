"""A pre-norm Transformer encoder with tfkit layers, against the same model in Keras layers.

The task needs attention: at each position, how many earlier tokens equal
this one (0, 1, 2, or "3 or more"). A token alone says nothing about its
answer, so the model must compare it with every earlier token; positions
after it must not count, so the attention is causal. Sequences have 8 to 32
tokens after a start token and are batched by length (tf.data's
bucket_by_sequence_length), so batches have different lengths and pad
tokens, which a padding mask hides from the attention.

Each block: RMSNorm (or LayerNorm), tfkit MultiHeadAttention with dropout
and the rotary embedding (tfkit RotaryEmbedding) on its projected queries
and keys, a residual, RMSNorm, a SwiGLU feed-forward (tfkit GatedDense and
Dense), a residual. The twin is the same encoder in Keras layers (Keras's
MultiHeadAttention, RMSNormalization, Dense, and the rotary embedding
written in keras.ops), with the same parameters and initial weights.

  python examples/nlp_encoder.py [--quick] [--norm rms|layer] [--out DIR]

Both models are trained with model.fit, their training steps timed with and
without XLA; then the tfkit model is saved (.keras), exported, checked
(`tfkit check`), served (`tfkit serve`) and queried over REST and gRPC.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import end_to_end
import keras
import numpy as np
import tensorflow as tf
from keras import ops

import tfkit

VOCAB, CAP, SHORTEST, LONGEST = 8, 3, 8, 32  # tokens 2 .. VOCAB + 1; 0 pads, 1 starts
WIDTH, HEADS, BLOCKS, HIDDEN, DROPOUT = 64, 4, 2, 128, 0.1
BUCKETS = (17, 25, LONGEST + 2)  # batches are padded to 16, 24 or 33 tokens
SETTINGS = {  # training sequences, epochs, batch, timed steps per round
    "quick": {"rows": 8192, "epochs": 3, "batch": 64, "timed": 20},
    "full": {"rows": 32768, "epochs": 6, "batch": 64, "timed": 60},
}
HELD_OUT, MODEL_NAME, LEARNING_RATE, TARGET = 4096, "encoder", 3e-3, 0.99


# --- Data -----------------------------------------------------------------------


def sequences(rows: int, seed: int):
    """(tokens, labels, weights), [rows, LONGEST + 1] each: a start token, 8
    to 32 random tokens, pads; the label of a token is the count of earlier
    equal tokens (capped at CAP); start and pad tokens weigh 0."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(SHORTEST, LONGEST + 1, size=rows)
    tokens = rng.integers(2, VOCAB + 2, size=(rows, LONGEST + 1)).astype("int32")
    position = np.arange(LONGEST + 1)
    tokens[:, 0] = 1
    tokens[position > lengths[:, None]] = 0
    earlier_equal = (tokens[:, :, None] == tokens[:, None, :]) & (position[None, :] < position[:, None])
    labels = np.minimum(earlier_equal.sum(-1), CAP).astype("int32")
    return tokens, labels, (tokens > 1).astype("float32")


def batched(data, batch: int, seed: int = 0) -> tf.data.Dataset:
    """Batches of similar lengths, each padded to its bucket's length; made
    once from shuffled sequences, then shuffled in order every epoch."""
    lengths = (data[0] > 0).sum(1)
    order = np.random.default_rng(seed).permutation(len(lengths))
    dataset = tf.data.Dataset.from_tensor_slices(tuple(a[order] for a in (*data, lengths)))
    dataset = dataset.map(lambda tokens, labels, weights, length: (tokens[:length], labels[:length], weights[:length]))
    dataset = dataset.bucket_by_sequence_length(
        lambda t, label, weight: tf.shape(t)[0],
        bucket_boundaries=list(BUCKETS),
        bucket_batch_sizes=[batch] * (len(BUCKETS) + 1),
        pad_to_bucket_boundary=True,
    )
    per_bucket = np.bincount(np.searchsorted(BUCKETS, lengths, side="right"))
    count = int(sum(-(-n // batch) for n in per_bucket))  # so that Keras's progress bar knows the steps
    dataset = dataset.cache().shuffle(count, seed=seed).apply(tf.data.experimental.assert_cardinality(count))
    return dataset.map(lambda t, label, weight: ({"tokens": t}, label, weight))


# --- Layers ---------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="nlp_encoder")
class KeyPaddingMask(keras.layers.Layer):
    """Tokens [batch, length] to the attention mask [batch, length, length]
    that hides pad keys (id 0) from every query."""

    def call(self, tokens):
        keys = ops.not_equal(tokens, 0)[:, None, :]
        return ops.broadcast_to(keys, (ops.shape(tokens)[0], ops.shape(tokens)[1], ops.shape(tokens)[1]))

    def compute_output_spec(self, tokens):
        return keras.KerasTensor((tokens.shape[0], tokens.shape[1], tokens.shape[1]), dtype="bool")


@keras.saving.register_keras_serializable(package="nlp_encoder")
class KerasRotaryEmbedding(keras.layers.Layer):
    """The rotary embedding in keras.ops (keras_hub's formula: the two halves
    of the features rotated by position / 10000^(2j / dim))."""

    def call(self, x):
        dim = x.shape[-1]
        inverse_frequency = 1.0 / 10000.0 ** (ops.arange(0, dim, 2, dtype="float32") / dim)
        angles = ops.arange(ops.shape(x)[1], dtype="float32")[:, None] * inverse_frequency[None, :]
        angles = ops.concatenate([angles, angles], axis=-1)[None, :, None, :]
        first, second = ops.split(x, 2, axis=-1)
        rotated = ops.concatenate([-second, first], axis=-1)
        return x * ops.cast(ops.cos(angles), x.dtype) + rotated * ops.cast(ops.sin(angles), x.dtype)


class _RotatedQueriesAndKeys:
    """Applies `rotary_type()` to the projected queries and keys, in the
    method Keras's MultiHeadAttention has for custom attention."""

    rotary_type: type

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rotary = self.rotary_type()

    def _compute_attention(self, query, key, value, attention_mask=None, training=None, *args, **kwargs):
        return super()._compute_attention(
            self.rotary(query), self.rotary(key), value, attention_mask, training, *args, **kwargs
        )


@keras.saving.register_keras_serializable(package="nlp_encoder")
class RotaryAttention(_RotatedQueriesAndKeys, tfkit.layers.MultiHeadAttention):
    rotary_type = tfkit.layers.RotaryEmbedding


@keras.saving.register_keras_serializable(package="nlp_encoder")
class KerasRotaryAttention(_RotatedQueriesAndKeys, keras.layers.MultiHeadAttention):
    rotary_type = KerasRotaryEmbedding


@keras.saving.register_keras_serializable(package="nlp_encoder")
class SwiGLU(keras.layers.Layer):
    """silu(a) * b on the two halves [a, b] of the last axis."""

    def call(self, x):
        gate, value = ops.split(x, 2, axis=-1)
        return ops.silu(gate) * value


LAYERS = {  # the encoder's parts in each flavor
    "tfkit": {
        "rms": tfkit.layers.RMSNorm,
        "layer": tfkit.layers.LayerNorm,
        "attention": RotaryAttention,
        "gated": lambda units: tfkit.layers.GatedDense(units, activation="silu"),
        "dense": tfkit.layers.Dense,
    },
    "keras": {
        "rms": keras.layers.RMSNormalization,
        "layer": keras.layers.LayerNormalization,
        "attention": KerasRotaryAttention,
        "gated": lambda units: keras.Sequential([keras.layers.Dense(2 * units), SwiGLU()]),
        "dense": keras.layers.Dense,
    },
}


def build_model(flavor: str, norm: str = "rms") -> keras.Model:
    """The encoder and a per-token classifier, in tfkit or Keras layers."""
    parts = LAYERS[flavor]
    tokens = keras.Input([None], dtype="int32", name="tokens")
    mask = KeyPaddingMask()(tokens)
    x = keras.layers.Embedding(VOCAB + 2, WIDTH)(tokens)
    for _ in range(BLOCKS):
        h = parts[norm]()(x)
        attention = parts["attention"](HEADS, WIDTH // HEADS, dropout=DROPOUT)
        x = x + attention(h, h, attention_mask=mask, use_causal_mask=True)
        h = parts[norm]()(x)
        x = x + parts["dense"](WIDTH)(parts["gated"](HIDDEN)(h))
    logits = parts["dense"](CAP + 1, name="count")(parts[norm]()(x))
    return keras.Model({"tokens": tokens}, logits, name=f"encoder_{flavor}")


# --- Training, timing, report -----------------------------------------------------


def compiled(model: keras.Model, jit: bool) -> keras.Model:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")  # over the weighted (real) tokens
    return end_to_end.compiled(model, jit, LEARNING_RATE, loss, weighted_metrics=[accuracy])


def fit(model: keras.Model, train: tf.data.Dataset, held_out, setting: dict) -> list[float]:
    """model.fit with Keras's progress bar; the held-out token accuracy after
    each epoch. (Keras's weighted metrics average [batch, length] weights per
    sequence first, so they would not count every token once.)"""
    print(f"\n{model.name}: model.fit, {setting['epochs']} epochs")
    curve = []

    def after_epoch(epoch, logs):
        curve.append(accuracy(model, held_out))
        print(f"\nheld-out token accuracy after epoch {epoch + 1}: {curve[-1]:.4f}", flush=True)

    callback = keras.callbacks.LambdaCallback(on_epoch_end=after_epoch)
    compiled(model, jit=False).fit(train, epochs=setting["epochs"], shuffle=False, callbacks=[callback], verbose=1)
    return curve


def accuracy(model: keras.Model, data) -> float:
    """Accuracy over the held-out tokens (start and pad tokens left out)."""
    tokens, labels, weights = data
    guesses = end_to_end.predict(model, {"tokens": tokens}).argmax(-1)
    return float(((guesses == labels) * weights).sum() / weights.sum())


def timed_models(initial: list, train: tf.data.Dataset, setting: dict, norm: str) -> dict:
    models = {}
    for flavor in end_to_end.FLAVORS:
        for jit in (False, True):
            models[flavor, jit] = compiled(build_model(flavor, norm), jit)
            models[flavor, jit].set_weights(initial)
    return end_to_end.steps_per_second(models, train.repeat(), setting["timed"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/examples/nlp_encoder"))
    parser.add_argument("--quick", action="store_true", help="a small setting (about a minute)")
    parser.add_argument("--norm", choices=("rms", "layer"), default="rms", help="RMSNorm or LayerNorm")
    args = parser.parse_args()
    setting = SETTINGS["quick" if args.quick else "full"]
    args.out.mkdir(parents=True, exist_ok=True)
    held_out_data = sequences(HELD_OUT, seed=2)
    train = batched(sequences(setting["rows"], seed=1), setting["batch"])
    chance = np.bincount(held_out_data[1][held_out_data[2] > 0]).max() / held_out_data[2].sum()
    print(
        f"{setting['rows']} training sequences, {HELD_OUT} held out; always guessing the commonest count: {chance:.4f}"
    )

    keras.utils.set_random_seed(0)
    ours, theirs = build_model("tfkit", args.norm), build_model("keras", args.norm)
    initial = end_to_end.same_initial_weights(ours, theirs)
    curves = {
        "tfkit": fit(ours, train, held_out_data, setting),
        "Keras layers": fit(theirs, train, held_out_data, setting),
    }
    reached = {"tfkit": accuracy(ours, held_out_data), "Keras layers": accuracy(theirs, held_out_data)}
    print("\ntiming training steps (model.fit, the same weights and batches), with and without XLA ...")
    rates = timed_models(initial, train, setting, args.norm)

    end_to_end.plot_curves(
        args.out / "accuracy.png", curves, "held-out token accuracy", "Counting earlier equal tokens"
    )
    served = end_to_end.save_export_serve(ours, args.out, MODEL_NAME, {"tokens": held_out_data[0][:8]})
    end_to_end.print_metric_table(
        "held-out token accuracy",
        reached,
        {"commonest count": dict.fromkeys(reached, f"{chance:.4f}"), "target": dict.fromkeys(reached, f"{TARGET}")},
    )
    end_to_end.print_speed_table(rates)
    return 0 if served and min(reached.values()) > chance + 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
