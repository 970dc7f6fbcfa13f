"""Keras 3 integration of the attention family: MultiHeadAttention, a drop-in
for keras.layers.MultiHeadAttention computed by tfkit's fused attention, and
use_fused_attention, which routes Keras's own dot_product_attention through
the same op."""

from __future__ import annotations

import numbers
import warnings

import keras
import tensorflow as tf

from tfkit import _compat
from tfkit import backend as tfkit_backend
from tfkit.ops import _checks
from tfkit.ops import attention as attention_ops

__all__ = ["MultiHeadAttention", "use_fused_attention"]


class _CausalOnly:
    """The attention mask that stands for "the causal mask and nothing else"
    (the op's `is_causal` then runs, and no [T, S] mask is built)."""

    def __repr__(self) -> str:
        return "<causal mask only>"


_CAUSAL_ONLY = _CausalOnly()


@keras.saving.register_keras_serializable(package="tfkit")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` computed by tfkit's fused attention.

    Takes the arguments of `keras.layers.MultiHeadAttention` (with its
    defaults) and `backend`; it has the same weights (names and shapes: the
    weights of one load into the other), config, masking and dtype rules.
    The projected query, key and value go to
    `tfkit.ops.dot_product_attention`, which never holds the
    `[target, source]` attention probabilities of a head. The layer's
    `dropout` is done inside the kernel, on the probabilities, seeded by the
    layer's dropout `SeedGenerator` (so `keras.utils.set_random_seed` makes a
    training run reproducible), and only when training. The `attention_mask`,
    the inputs' Keras masks, `use_causal_mask` and `sliding_window` are
    merged as Keras merges them; where the causal mask is the only one, the
    op's `is_causal` runs instead of a mask. A query whose every key is
    masked gets what Keras's layer gives it: the mean of the values where
    Keras runs `dot_product_attention` (no dropout, inputs of rank 3),
    zeros where Keras runs its own masked softmax.

    Keras's own computation runs (with Keras's dropout) for:
      - `return_attention_scores=True` (the fused op never forms the scores);
      - attention over more than one axis (`attention_axes`; over one axis
        of inputs of rank 4 or more, the other axes are folded into the
        batch and the op runs), and `use_causal_mask` when that axis is not
        axis 1 (Keras's causal mask is over axis 1 of the inputs);
      - `value_dim != key_dim` (the op takes values of the keys' shape);
      - query, key and value of different dtypes, or a dtype the op does
        not take (other than float16, bfloat16, float32, float64).

    Args:
      *args, **kwargs: As for `keras.layers.MultiHeadAttention`.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)

    def _compute_attention_mask(
        self,
        query,
        value,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
    ):
        """Keras's merged mask, or _CAUSAL_ONLY where the causal mask is the
        only one and this class's `_compute_attention` receives it."""
        causal_only = (
            use_causal_mask
            and all(mask is None for mask in (query_mask, value_mask, key_mask, attention_mask))
            and self._sliding_window is None
            and type(self)._compute_attention is MultiHeadAttention._compute_attention
        )
        if causal_only:
            return _CAUSAL_ONLY
        return super()._compute_attention_mask(
            query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask
        )

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        """Keras's `_compute_attention` (its arguments and results), computed
        by the fused op where it can serve (see the class)."""
        if attention_mask is _CAUSAL_ONLY:
            attention_mask, use_causal_mask = None, True
        if not self._fuses(query, key, value, return_attention_scores, use_causal_mask):
            return super()._compute_attention(
                query, key, value, attention_mask, training, return_attention_scores, use_causal_mask=use_causal_mask
            )
        rate = self._dropout if training and self._dropout > 0.0 else 0.0
        layout = _Layout(len(query.shape), self._attention_axes[0])
        mask = None if attention_mask is None else layout.flat_mask(attention_mask, query)
        output = attention_ops.dot_product_attention(
            *(layout.flat(tf.convert_to_tensor(t)) for t in (query, key, value)),
            mask=mask,
            scale=self._inverse_sqrt_key_dim,
            is_causal=use_causal_mask,
            dropout_rate=rate,
            seed=self._dropout_layer.seed_generator.next() if rate else None,
            backend=self.backend,
        )
        if mask is not None and self._keras_runs_its_softmax(query):
            output = _zero_unattended(output, mask)
        return layout.unflat(output, query), None

    def _keras_runs_its_softmax(self, query) -> bool:
        """Whether Keras's layer computes this attention with its own masked
        softmax (which gives a query whose every key is masked zero
        probabilities) rather than with dot_product_attention (which gives
        it the mean of the values)."""
        return self._dropout > 0.0 or len(query.shape) != 4

    def _fuses(self, query, key, value, return_attention_scores: bool, causal: bool) -> bool:
        """Whether the fused op can serve this attention."""
        if return_attention_scores or len(self._attention_axes) != 1 or self._value_dim != self._key_dim:
            return False
        if causal and self._attention_axes[0] != 1:
            return False  # Keras's causal mask is over axis 1 of the inputs
        dtypes = {tf.as_dtype(keras.backend.standardize_dtype(t.dtype)) for t in (query, key, value)}
        return len(dtypes) == 1 and dtypes <= set(_checks.FLOAT_DTYPES)

    def get_config(self):
        return {**super().get_config(), "backend": self.backend}


class _Layout:
    """The projected `[batch, <free axes>, heads, head_dim]` tensors of a
    MultiHeadAttention that attends over one of the free axes, as the op's
    `[batch, sequence, heads, head_dim]`: the attention axis moved next to
    the heads, the other free axes folded into the batch."""

    def __init__(self, rank: int, attention_axis: int):
        self.rank = rank
        self.batch_axes = [a for a in range(rank - 2) if a != attention_axis]
        self.perm = [*self.batch_axes, attention_axis, rank - 2, rank - 1]
        self.moves = self.perm != list(range(rank))

    def flat(self, x: tf.Tensor) -> tf.Tensor:
        if self.moves:
            x = tf.transpose(x, self.perm)
        if self.rank == 4:
            return x
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[-3:]], 0))

    def unflat(self, output: tf.Tensor, query) -> tf.Tensor:
        """The op's output back in query's layout."""
        if self.rank == 4 and not self.moves:
            return output
        moved = tf.gather(tf.shape(query), self.perm)
        output = tf.reshape(output, moved)
        return tf.transpose(output, [self.perm.index(a) for a in range(self.rank)]) if self.moves else output

    def flat_mask(self, attention_mask, query) -> tf.Tensor:
        """Keras's attention mask (its leading axes the batch axes, then the
        target and source) as the op's bool mask over the logits
        `[batch, heads, target, source]`, broadcast over the heads as Keras
        does."""
        mask = tf.cast(attention_mask, tf.bool)
        while mask.shape.rank < self.rank:
            mask = tf.expand_dims(mask, -3)
        if self.rank == 4:
            return mask
        batch = tf.gather(tf.shape(query), self.batch_axes)
        mask = tf.broadcast_to(mask, tf.concat([batch, tf.shape(mask)[-3:]], 0))
        return tf.reshape(mask, tf.concat([[-1], tf.shape(mask)[-3:]], 0))


def _zero_unattended(output: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The op's `[batch, target, heads, head_dim]` output with zeros for each
    query that `mask` (over the logits `[batch, heads, target, source]`)
    lets attend to no key."""
    attends = tf.transpose(tf.reduce_any(mask, axis=-1), [0, 2, 1])[..., tf.newaxis]
    return tf.where(attends, output, tf.zeros([], output.dtype))


# keras.ops.dot_product_attention routed through the fused op -----------------


def use_fused_attention(enabled: bool = True) -> bool:
    """Routes Keras's own `keras.ops.dot_product_attention` through tfkit's fused op.

    With `enabled=True`, every caller of `keras.ops.dot_product_attention` on
    the TensorFlow backend (a model as it is, Keras's `MultiHeadAttention`
    and `GroupQueryAttention` where they have no dropout) runs
    `tfkit.ops.dot_product_attention`, which gives Keras's results, and
    `flash_attention=True` is accepted (the op is a flash attention).
    Calls the op can't serve run Keras's own function as before: inputs of
    a rank other than 4 or of a non-float dtype, a non-bool `mask`, a
    `scale` that is a tensor, and `attn_logits_soft_cap`.
    `enabled=False` restores Keras's function. `import tfkit` alone changes
    nothing in Keras.

    Where this Keras's function is not the one tfkit knows (see
    `python -m tfkit info`, feature "keras_dot_product_attention"), this
    warns and changes nothing.

    Args:
      enabled: Whether Keras's dot_product_attention runs tfkit's op.

    Returns:
      Whether it did before this call.
    """
    previous = _compat.keras_dot_product_attention_routed()
    if not _compat.route_keras_dot_product_attention(_fused_keras_attention if enabled else None):
        reason = _compat.status()["keras_dot_product_attention"][1]
        warnings.warn(
            f"tfkit.use_fused_attention({enabled}) changed nothing: this Keras's dot_product_attention "
            f"is not the one tfkit knows ({reason})",
            _compat.CompatWarning,
            stacklevel=2,
        )
    return previous


def _fused_keras_attention(
    query,
    key,
    value,
    bias=None,
    mask=None,
    scale=None,
    is_causal=False,
    flash_attention=None,
    attn_logits_soft_cap=None,
):
    """The TensorFlow backend's dot_product_attention, computed by tfkit's op
    where it can serve the call, else by Keras's own function."""
    query, key, value = (tf.convert_to_tensor(t) for t in (query, key, value))
    dtype = tf.as_dtype(keras.backend.result_type(query.dtype, key.dtype, value.dtype))
    if not _serves(query, dtype, mask, scale, attn_logits_soft_cap):
        return _compat.keras_dot_product_attention()(
            query,
            key,
            value,
            bias=bias,
            mask=mask,
            scale=scale,
            is_causal=is_causal,
            flash_attention=flash_attention,
            attn_logits_soft_cap=attn_logits_soft_cap,
        )
    query, key, value = (tf.cast(t, dtype) for t in (query, key, value))
    if bias is not None:
        bias = tf.cast(bias, dtype)
    return attention_ops.dot_product_attention(
        query, key, value, bias=bias, mask=mask, scale=scale, is_causal=is_causal
    )


def _serves(query, dtype, mask, scale, soft_cap) -> bool:
    """Whether the fused op serves a call of Keras's dot_product_attention."""
    return (
        query.shape.rank == 4
        and dtype in _checks.FLOAT_DTYPES
        and (mask is None or tf.convert_to_tensor(mask).dtype == tf.bool)
        and (scale is None or isinstance(scale, numbers.Real))
        and soft_cap is None
    )
