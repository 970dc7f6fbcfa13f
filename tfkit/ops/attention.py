"""The attention family: fused dot-product attention, Keras's layout and semantics.

`dot_product_attention` is a `tfkit.declare.Op` with a compiled C++/CUDA
implementation (`Tfkit>DotProductAttention`: a tiled, online-softmax
forward that saves each row's log-sum-exp, and `Tfkit>DotProductAttentionGrad`,
which recomputes the probabilities tile by tile from it) and a
pure-TensorFlow reference, the composite `keras.ops.dot_product_attention`
runs on the TensorFlow backend, plus the same dropout.

Dropout is counter-based: element (b, n, t, s) of the probabilities is kept
when `dropout_bits(seed, b, n, t, s) >= floor(rate * 2**32)`, a hash of
the seed and the four indices that the CPU and CUDA kernels and the
reference compute alike (kernels/attention/attention_rules.h holds the C++
definition, `_mix` below mirrors it), so the backward regenerates the mask
without storing it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfkit import _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = ["dot_product_attention", "dot_product_attention_reference", "dropout_keep_mask"]

# A masked logit is replaced by this (Keras's large negative number for
# float32 and float64 logits): a row with every key masked is the mean of
# the values.
MASK_FILL = -0.7 * 3.38953e38

_GOLDEN = 0x9E3779B9
_MURMUR_1 = 0x85EBCA6B
_MURMUR_2 = 0xC2B2AE35
_UINT32 = 0xFFFFFFFF

_QUERY_LAYOUT = "[batch, target, heads, head_dim]"
_KEY_LAYOUT = "[batch, source, kv_heads, head_dim]"


def _prepare_dot_product_attention(
    query,
    key,
    value,
    bias=None,
    mask=None,
    scale: float | None = None,
    is_causal: bool = False,
    *,
    dropout_rate: float = 0.0,
    seed=None,
):
    """Scaled dot-product attention, fused: `keras.ops.dot_product_attention`'s layout and results.

    Computes `softmax(query . key * scale + bias, masked) . value` over the
    keys. The logits and the softmax are computed in float32 (float64 for
    float64 inputs) whatever the input dtype. `bias` is added to the logits,
    then masked logits (where `mask` is False, and key `s` for query `t < s`
    where `is_causal`, top-left aligned as Keras's `band_part`) are replaced
    by Keras's large negative number (-0.7 * 3.38953e38), so a row whose
    every key is masked gives what Keras gives: the mean of `value` over
    the keys. Query heads share key and value heads in groups (grouped-query
    and multi-query attention): query head `n` attends with key and value
    head `n // (heads // kv_heads)`, inside the kernel.

    The kernels never hold the `[target, source]` logits of a head: their
    extra memory is linear in `target + source`. A masked key's value is
    never read where a tile of keys is masked for every query of a tile.

    Args:
      query: `[batch, target, heads, head_dim]`, float16, bfloat16, float32
        or float64.
      key: `[batch, source, kv_heads, head_dim]`, query's dtype; `heads` a
        multiple of `kv_heads`.
      value: key's shape, query's dtype.
      bias: Optional, a float tensor broadcastable to the logits
        `[batch, heads, target, source]` (rank <= 4, each size 1 or the
        logits'), cast to query's dtype as Keras does; its gradient is
        summed over the dimensions it is broadcast along.
      mask: Optional, a bool tensor broadcastable to the logits; True
        attends.
      scale: The logits' scale, a finite Python float (rounded to float32,
        as the op's attribute holds it); default `1 / sqrt(head_dim)`
        computed in float32, as Keras does.
      is_causal: Mask key `s` for query `t` where `s > t`.
      dropout_rate: Drop each probability with this probability, in
        `[0, 1)` (rounded to float32); kept ones are scaled by
        `1 / (1 - rate)`. 0 is exactly no dropout.
      seed: The dropout's seed: a Python int or an integer tensor of shape
        `[2]` (a Keras `SeedGenerator`'s `next()`); the same seed gives the
        same result. Default: drawn at random when `dropout_rate > 0`.

    Returns:
      `[batch, target, heads, head_dim]` in query's dtype.

    Raises:
      InvalidArgumentError: ranks other than 4, batch or head_dim of key
        not query's, heads not a multiple of kv_heads, value not key's
        shape, a bias or mask not broadcastable, a mask not bool, a bad
        dtype, scale or dropout_rate.
    """
    query = _checks.float_input("query", query)
    key = _checks.float_input("key", key, dtype=query.dtype, like="query")
    value = _checks.float_input("value", value, dtype=query.dtype, like="query")
    for name, tensor, layout in (("query", query, _QUERY_LAYOUT), ("key", key, _KEY_LAYOUT)):
        if tensor.shape.rank not in (None, 4):
            raise _checks.invalid_argument(f"{name} must have rank 4 ({layout}), got shape {shape_string(tensor)}")
    _check_static_shapes(query, key, value)
    logits = _static_logits(query, key)
    if bias is not None:
        bias = tf.convert_to_tensor(bias)
        if not bias.dtype.is_floating:
            raise _checks.invalid_argument(f"bias must have a float dtype, got {bias.dtype.name}")
        bias = _rank4("bias", tf.cast(bias, query.dtype), logits)
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.dtype != tf.bool:
            raise _checks.invalid_argument(f"mask must have dtype bool, got {mask.dtype.name}")
        mask = _rank4("mask", mask, logits)
    if scale is not None:
        scale = _checks.check_finite("scale", scale)
    dropout_rate = check_dropout_rate(dropout_rate)
    seed = _seed_tensor(seed, dropout_rate)
    kwargs = {"scale": scale, "is_causal": bool(is_causal), "dropout_rate": dropout_rate}
    return (query, key, value, bias, mask, seed), kwargs


dot_product_attention = Op("tfkit.ops.dot_product_attention", prepare=_prepare_dot_product_attention)


def check_dropout_rate(rate: float) -> float:
    """Returns rate rounded to float32 if it is in [0, 1) (the kernels' rule and message)."""
    rounded = np.float32(rate)
    if not (0.0 <= rounded < 1.0):
        raise _checks.invalid_argument(f"dropout_rate must be in [0, 1), got {rounded:.6g}")
    return float(rounded)


def _check_static_shapes(query, key, value) -> None:
    """The kernels' shape rule (AttentionShapeError) where the shapes are known."""
    _checks.check_same_shape("value", value, "key", key)
    if value.shape.rank not in (None, 4) and key.shape.rank is None:
        raise _checks.invalid_argument(f"value must have rank 4 ({_KEY_LAYOUT}), got shape {shape_string(value)}")
    if query.shape.rank is None or key.shape.rank is None:
        return
    q, k = query.shape.as_list(), key.shape.as_list()
    if not (_agree(q[0], k[0]) and _agree(q[3], k[3])):
        raise _checks.invalid_argument(
            f"key must have the batch size and head_dim of query {shape_string(query)} (dimensions 0 and 3), "
            f"got shape {shape_string(key)}"
        )
    heads, kv_heads = q[2], k[2]
    if heads is not None and kv_heads is not None and (heads % kv_heads if kv_heads else heads):
        raise _checks.invalid_argument(
            f"key must have a number of heads that divides the number of query heads {heads} "
            f"(query {shape_string(query)}), got {kv_heads} in shape {shape_string(key)}"
        )


def _agree(a, b) -> bool:
    return a is None or b is None or a == b


def _static_logits(query, key) -> list:
    """The logits' sizes [B, N, T, S] as far as they are known."""
    q = query.shape.as_list() if query.shape.rank is not None else [None] * 4
    k = key.shape.as_list() if key.shape.rank is not None else [None] * 4
    return [q[0] if q[0] is not None else k[0], q[2], q[1], k[1]]


def _rank4(name: str, tensor: tf.Tensor, logits: list) -> tf.Tensor:
    """bias or mask as rank 4 (leading sizes 1, as NumPy broadcasts), checked
    against the logits' sizes where known."""
    rank = tensor.shape.rank
    if rank is None:
        raise _checks.invalid_argument(f"{name} must have a known rank (at most 4), got an unknown rank")
    shape = [1] * (4 - rank) + tensor.shape.as_list() if rank <= 4 else tensor.shape.as_list()
    if rank > 4 or not all(d is None or d == 1 or w is None or d == w for d, w in zip(shape, logits, strict=True)):
        raise _checks.invalid_argument(
            f"{name} must be broadcastable to the logits [batch, heads, target, source] "
            f"{shape_string(logits)} (rank 4, each size 1 or the logits' size), got shape "
            f"{shape_string(shape)}"
        )
    if rank < 4:
        tensor = tf.reshape(tensor, tf.concat([tf.ones([4 - rank], tf.int32), tf.shape(tensor)], 0))
    return tensor


def _seed_tensor(seed, dropout_rate: float) -> tf.Tensor:
    """The seed as an int64 [2] tensor (a Python int s is [s, 0])."""
    if seed is None:
        if dropout_rate == 0.0:
            return tf.zeros([2], tf.int64)
        return tf.random.uniform([2], minval=-(2**63), maxval=2**63 - 1, dtype=tf.int64)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if not -(2**63) <= int(seed) < 2**64:
            raise _checks.invalid_argument(f"seed must be an int that fits 64 bits, got {seed}")
        return tf.constant([int(seed) - 2**64 if int(seed) >= 2**63 else int(seed), 0], tf.int64)
    tensor = tf.convert_to_tensor(seed)
    if not tensor.dtype.is_integer or not tensor.shape.is_compatible_with([2]):
        raise _checks.invalid_argument(
            "seed must be an int or an integer tensor of shape [2], got "
            f"{tensor.dtype.name} shape {shape_string(tensor)}"
        )
    return tf.cast(tensor, tf.int64)


def _raw_attrs(query, bias, mask, *, scale, is_causal, dropout_rate) -> dict:
    return {
        "scale": 1.0 if scale is None else scale,
        "default_scale": scale is None,
        "is_causal": is_causal,
        "dropout_rate": dropout_rate,
        "has_bias": bias is not None,
        "has_mask": mask is not None,
        "U": _checks.accumulator_dtype(query.dtype),
    }


def _present(query, bias, mask):
    """bias and mask as the raw op takes them: an empty placeholder for one not given."""
    bias = tf.zeros([0], query.dtype) if bias is None else bias
    mask = tf.zeros([0], tf.bool) if mask is None else mask
    return bias, mask


@dot_product_attention.compiled
def _attention_compiled(query, key, value, bias, mask, seed, *, scale, is_causal, dropout_rate):
    library = _loader.load_library()
    attrs = _raw_attrs(query, bias, mask, scale=scale, is_causal=is_causal, dropout_rate=dropout_rate)
    output, _ = library.tfkit_dot_product_attention(query, key, value, *_present(query, bias, mask), seed, **attrs)
    return output


@tf.RegisterGradient("Tfkit>DotProductAttention")
def _attention_grad(op, dout, dlse):
    """The gradients of query, key, value and bias (lse carries none)."""
    del dlse
    query, key, value, bias, mask, seed = op.inputs
    output, lse = op.outputs
    attrs = {name: op.get_attr(name) for name in _GRAD_ATTRS}
    if dout is None:
        dout = tf.zeros_like(output)
    dquery, dkey, dvalue, dbias = _loader.load_library().tfkit_dot_product_attention_grad(
        dout, query, key, value, bias, mask, seed, output, lse, **attrs
    )
    return dquery, dkey, dvalue, dbias if attrs["has_bias"] else None, None, None


_GRAD_ATTRS = ("scale", "default_scale", "is_causal", "dropout_rate", "has_bias", "has_mask")


dot_product_attention_reference = dot_product_attention.reference_function()


@dot_product_attention.reference
def _attention_composite(query, key, value, bias, mask, seed, *, scale, is_causal, dropout_rate):
    with tf.control_dependencies(_runtime_asserts(query, key, value, bias, mask)):
        acc = _checks.accumulator_dtype(query.dtype)
        logits = masked_logits(query, key, bias, mask, scale=scale, is_causal=is_causal)
        probs = tf.nn.softmax(logits, axis=-1)
        if dropout_rate > 0.0:
            kept = dropout_keep_mask(seed, tf.shape(logits), dropout_rate)
            probs = probs * tf.where(kept, tf.constant(1.0 / (1.0 - dropout_rate), acc), tf.constant(0.0, acc))
        if _one_query_head_per_kv_head(query, key):
            return tf.cast(tf.einsum("bnts,bsnh->btnh", probs, tf.cast(value, acc)), query.dtype)
        batch, target, heads, head_dim = tf.unstack(tf.shape(query))
        kv_heads = tf.shape(key)[2]
        group = heads // tf.maximum(kv_heads, 1)
        probs = tf.reshape(probs, [batch, kv_heads, group, target, tf.shape(key)[1]])
        output = tf.einsum("bkgts,bskh->btkgh", probs, tf.cast(value, acc))
        return tf.cast(tf.reshape(output, [batch, target, heads, head_dim]), query.dtype)


def _one_query_head_per_kv_head(query, key) -> bool:
    """Whether the heads are known to be as many as the key's (no groups):
    then the composite is Keras's own einsums, which XLA compiles better
    than the grouped ones."""
    heads, kv_heads = query.shape[2], key.shape[2]
    return heads is not None and heads == kv_heads


def masked_logits(query, key, bias=None, mask=None, *, scale=None, is_causal=False) -> tf.Tensor:
    """The logits [B, N, T, S] the softmax runs over, in float32 (float64 for
    float64 inputs): query . key * scale + bias, masked logits replaced by
    MASK_FILL, as Keras computes them (query head n reads key head
    n // (N / K))."""
    acc = _checks.accumulator_dtype(query.dtype)
    batch, target, heads, head_dim = tf.unstack(tf.shape(query))
    source, kv_heads = tf.shape(key)[1], tf.shape(key)[2]
    if _one_query_head_per_kv_head(query, key):
        logits = tf.einsum("btnh,bsnh->bnts", tf.cast(query, acc), tf.cast(key, acc))
    else:
        group = heads // tf.maximum(kv_heads, 1)
        grouped = tf.reshape(tf.cast(query, acc), [batch, target, kv_heads, group, head_dim])
        logits = tf.einsum("btkgh,bskh->bkgts", grouped, tf.cast(key, acc))
        logits = tf.reshape(logits, [batch, heads, target, source])
    if scale is None:
        scale = 1.0 / tf.sqrt(tf.cast(head_dim, tf.float32))
    logits = logits * tf.cast(scale, acc)
    if bias is not None:
        logits = logits + tf.cast(bias, acc)
    keep = _attended(mask, is_causal, target, source)
    if keep is not None:
        logits = tf.where(keep, logits, tf.constant(MASK_FILL, acc))
    return logits


def _attended(mask, is_causal: bool, target, source):
    """Where the logits are kept (None: everywhere), as Keras combines them."""
    keep = mask
    if is_causal:
        causal = tf.linalg.band_part(tf.ones([target, source], tf.bool), -1, 0)[tf.newaxis, tf.newaxis]
        keep = causal if keep is None else tf.logical_and(keep, causal)
    return keep


def _mix(h: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """The dropout hash's step (Mix in attention_rules.h), on uint32 tensors."""
    h = tf.bitwise.bitwise_xor(h, v) + tf.constant(_GOLDEN, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(_MURMUR_1, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(13, tf.uint32)))
    h = h * tf.constant(_MURMUR_2, tf.uint32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))


def _halves(seed: tf.Tensor) -> list[tf.Tensor]:
    """An int64 [2] seed's four 32-bit halves, low half first."""
    seed = tf.cast(seed, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(seed, _UINT32), tf.uint32)
    high = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(seed, 32), _UINT32), tf.uint32)
    return [low[0], high[0], low[1], high[1]]


def _index(size, axis: int) -> tf.Tensor:
    """0..size-1 as uint32 along `axis` of a rank-4 shape."""
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    return tf.reshape(tf.cast(tf.range(size, dtype=tf.int64), tf.uint32), shape)


def dropout_keep_mask(seed, shape, rate: float) -> tf.Tensor:
    """The kernels' dropout keep mask over the logits' shape [B, N, T, S].

    Element (b, n, t, s) is kept when its 32 hash bits are at least
    floor(rate * 2**32): the bits are Mix(Mix(row, s), 0) with row =
    Mix(Mix(Mix(key, b), n), t) and key the seed's four 32-bit halves mixed
    into 0 (SeedKey, RowKey and DropoutBits in attention_rules.h).

    Args:
      seed: An int64 tensor of shape [2].
      shape: The logits' shape [B, N, T, S] (a tensor or list).
      rate: The dropout rate (rounded to float32 as the op's attr is).

    Returns:
      A bool tensor of `shape`, True where the element is kept.
    """
    key = tf.constant(0, tf.uint32)
    for half in _halves(seed):
        key = _mix(key, half)
    shape = tf.unstack(tf.cast(shape, tf.int64), num=4)
    row = key
    for axis in range(3):
        row = _mix(row, _index(shape[axis], axis))
    bits = _mix(_mix(row, _index(shape[3], 3)), tf.constant(0, tf.uint32))
    threshold = int(float(np.float32(rate)) * 2.0**32)
    return bits >= tf.constant(threshold, tf.uint32)


def _runtime_asserts(query, key, value, bias, mask) -> list:
    """Run-time checks for the reference path where shapes are not static."""
    tensors = [query, key, value] + [t for t in (bias, mask) if t is not None]
    if all(t.shape.is_fully_defined() for t in tensors):
        return []
    asserts = [
        tf.debugging.assert_rank(query, 4, message=f"query must have rank 4 ({_QUERY_LAYOUT})"),
        tf.debugging.assert_rank(key, 4, message=f"key must have rank 4 ({_KEY_LAYOUT})"),
        tf.debugging.assert_equal(tf.shape(value), tf.shape(key), message="value must have the shape of key"),
    ]
    with tf.control_dependencies(asserts[:2]):
        q, k = tf.shape(query), tf.shape(key)
        asserts.append(
            tf.debugging.assert_equal(
                tf.gather(k, [0, 3]),
                tf.gather(q, [0, 3]),
                message="key must have the batch size and head_dim of query (dimensions 0 and 3)",
            )
        )
        asserts.append(
            tf.debugging.assert_equal(
                tf.math.floormod(q[2], tf.maximum(k[2], 1)) + tf.cast(tf.equal(k[2], 0) & (q[2] > 0), tf.int32),
                0,
                message="key must have a number of heads that divides the number of query heads",
            )
        )
        logits = tf.stack([q[0], q[2], q[1], k[1]])
        for name, tensor in (("bias", bias), ("mask", mask)):
            if tensor is not None:
                sizes = tf.shape(tensor)
                asserts.append(
                    tf.debugging.assert_equal(
                        tf.reduce_all((sizes == 1) | (sizes == logits)),
                        True,
                        message=f"{name} must be broadcastable to the logits [batch, heads, target, source]",
                    )
                )
    return asserts
