"""The attention family: forward against NumPy and Keras, gradients, masks,
grouped heads, dropout, graph tracing, bad inputs."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import assert_close, kernel_and_shape_function_errors, run_python, to_numpy64
from tfkit.ops import attention
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
BACKENDS = ["compiled", "reference"]


def numpy_attention(q, k, v, bias=None, mask=None, scale=None, is_causal=False, keep=None, rate=0.0):
    """Keras's composite in float64 NumPy, key and value heads repeated per group."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    heads, kv_heads = q.shape[2], k.shape[2]
    k, v = (np.repeat(a, heads // kv_heads, axis=2) for a in (k, v))
    # The op's scale attr is a float32, and Keras's default is computed in float32.
    scale = np.float32(1.0) / np.sqrt(np.float32(q.shape[-1])) if scale is None else np.float32(scale)
    logits = np.einsum("btnh,bsnh->bnts", q, k) * float(scale)
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    attended = np.ones(logits.shape, bool)
    if mask is not None:
        attended &= np.asarray(mask, bool)
    if is_causal:
        attended &= np.tril(np.ones(logits.shape[-2:], bool))
    logits = np.where(attended, logits, attention.MASK_FILL)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if keep is not None:
        probs = probs * np.where(keep, 1.0 / (1.0 - rate), 0.0)
    return np.einsum("bnts,bsnh->btnh", probs, v)


def make_inputs(batch, target, source, heads, kv_heads, dim, dtype, seed=0):
    rng = np.random.default_rng(seed)
    q = tf.cast(rng.normal(size=(batch, target, heads, dim)), dtype)
    k = tf.cast(rng.normal(size=(batch, source, kv_heads, dim)), dtype)
    v = tf.cast(rng.normal(size=(batch, source, kv_heads, dim)), dtype)
    return q, k, v


def padding_mask(batch, source, lengths):
    """[batch, 1, 1, source]: True for the first lengths[b] keys."""
    return tf.constant(np.arange(source)[None, :] < np.asarray(lengths)[:, None])[:, None, None, :]


# (name, sizes (B, T, S, N, K, H), extra arguments (bias/mask as shapes or builders))
CASES = [
    ("plain", (2, 5, 7, 4, 4, 8), {}),
    ("gqa", (2, 6, 9, 6, 2, 8), {}),
    ("mqa", (1, 4, 5, 4, 1, 16), {}),
    ("causal", (2, 7, 7, 2, 2, 8), {"is_causal": True}),
    ("causal_t_lt_s", (1, 3, 8, 2, 1, 4), {"is_causal": True}),
    ("causal_t_gt_s", (1, 9, 4, 2, 2, 4), {"is_causal": True}),
    ("bias_full", (2, 5, 6, 2, 2, 8), {"bias": (2, 2, 5, 6)}),
    ("bias_heads", (2, 5, 6, 4, 2, 8), {"bias": (1, 4, 5, 6)}),
    ("bias_keys", (2, 5, 6, 2, 2, 8), {"bias": (6,)}),
    ("bias_rows", (2, 5, 6, 2, 2, 8), {"bias": (2, 1, 5, 1)}),
    ("padding", (3, 4, 10, 2, 2, 8), {"mask": "padding"}),
    ("mask_full", (2, 5, 6, 2, 1, 8), {"mask": (2, 2, 5, 6)}),
    ("mask_causal_bias", (2, 6, 6, 4, 2, 8), {"mask": (2, 1, 6, 6), "bias": (1, 4, 1, 6), "is_causal": True}),
    ("decode", (2, 1, 200, 4, 2, 16), {"mask": "padding"}),
    ("tiles", (1, 70, 150, 2, 1, 8), {"is_causal": True, "bias": (1, 2, 70, 150)}),
    ("scale", (1, 4, 4, 2, 2, 8), {"scale": 0.3}),
]


def build(sizes, extra, dtype, seed=0):
    batch, target, source, heads, kv_heads, dim = sizes
    q, k, v = make_inputs(batch, target, source, heads, kv_heads, dim, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    kwargs = dict(extra)
    if isinstance(extra.get("bias"), tuple):
        kwargs["bias"] = tf.cast(rng.normal(size=extra["bias"]), dtype)
    if extra.get("mask") == "padding":
        kwargs["mask"] = padding_mask(batch, source, rng.integers(1, source + 1, size=batch))
    elif isinstance(extra.get("mask"), tuple):
        kwargs["mask"] = tf.constant(rng.uniform(size=extra["mask"]) < 0.7)
    return (q, k, v), kwargs


def numpy_expected(args, kwargs):
    q, k, v = (to_numpy64(a) for a in args)
    bias = kwargs.get("bias")
    mask = kwargs.get("mask")
    if bias is not None:
        bias = to_numpy64(bias)
    if mask is not None:
        mask = mask.numpy()
    return numpy_attention(q, k, v, bias, mask, kwargs.get("scale"), kwargs.get("is_causal", False))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("name,sizes,extra", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_numpy(name, sizes, extra, dtype, backend):
    args, kwargs = build(sizes, extra, dtype)
    got = attention.dot_product_attention(*args, **kwargs, backend=backend)
    assert got.dtype == dtype and got.shape == args[0].shape
    assert_close(got, numpy_expected(args, kwargs), dtype)


@pytest.mark.parametrize("name,sizes,extra", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_keras(name, sizes, extra):
    args, kwargs = build(sizes, extra, tf.float32)
    if sizes[4] == 1:
        # Keras repeats the key and value heads only where there are more
        # than one: a single head it leaves to broadcasting, which its
        # einsum does not do.
        args = (args[0], tf.repeat(args[1], sizes[3], axis=2), tf.repeat(args[2], sizes[3], axis=2))
    want = keras.ops.dot_product_attention(*args, **kwargs)
    for backend in BACKENDS:
        got = attention.dot_product_attention(*args, **kwargs, backend=backend)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_row_with_every_key_masked_is_the_mean_of_the_values(backend):
    (q, k, v), _ = build((2, 40, 150, 2, 2, 8), {}, tf.float32)
    mask = np.ones((2, 1, 40, 150), bool)
    mask[0, :, 3] = False  # one query sees no key
    mask[1, :, :, :] = False  # no query of batch item 1 sees a key
    got = attention.dot_product_attention(q, k, v, mask=tf.constant(mask), backend=backend).numpy()
    mean = v.numpy().mean(axis=1)
    np.testing.assert_allclose(got[0, 3], mean[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], np.broadcast_to(mean[1], got[1].shape), rtol=1e-5, atol=1e-5)
    want = keras.ops.dot_product_attention(q, k, v, mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_no_keys_gives_zeros_and_no_queries_gives_no_rows():
    (q, k, v), _ = build((2, 3, 0, 2, 2, 4), {}, tf.float32)
    got = attention.dot_product_attention(q, k, v, backend="compiled")
    np.testing.assert_array_equal(got.numpy(), np.zeros([2, 3, 2, 4]))
    (q, k, v), _ = build((2, 0, 5, 2, 2, 4), {}, tf.float32)
    assert attention.dot_product_attention(q, k, v, backend="compiled").shape == (2, 0, 2, 4)


def gradients(args, kwargs, backend, seed=3):
    tensors = list(args) + ([kwargs["bias"]] if "bias" in kwargs else [])
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        extra = {**kwargs, "bias": tensors[3]} if "bias" in kwargs else kwargs
        y = attention.dot_product_attention(*tensors[:3], **extra, backend=backend)
        weights = tf.cast(np.random.default_rng(seed).normal(size=y.shape), y.dtype)
        loss = tf.reduce_sum(tf.cast(y, tf.float64) * tf.cast(weights, tf.float64))
    return tape.gradient(loss, tensors)


@pytest.mark.parametrize("name,sizes,extra", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_the_reference_in_float64(name, sizes, extra):
    """dquery, dkey, dvalue and dbias (summed over its broadcast dims) from the one grad op."""
    args, kwargs = build(sizes, extra, tf.float64)
    compiled = gradients(args, kwargs, "compiled")
    reference = gradients(args, kwargs, "reference")
    for got, want in zip(compiled, reference, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)


def test_gradients_of_a_row_with_every_key_masked():
    """Its probabilities are uniform over the masked keys: dvalue gets 1/S
    of its output gradient, and no logit gets a gradient."""
    (q, k, v), _ = build((1, 40, 130, 2, 1, 4), {}, tf.float64)
    mask = np.ones((1, 2, 40, 130), bool)
    mask[0, 1, 5:9] = False
    mask[0, 0, 33] = False
    mask[0, 0, 30, 100:] = False
    kwargs = {"mask": tf.constant(mask), "bias": tf.cast(np.random.default_rng(2).normal(size=(130,)), tf.float64)}
    compiled = gradients((q, k, v), kwargs, "compiled")
    reference = gradients((q, k, v), kwargs, "reference")
    for got, want in zip(compiled, reference, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)


OPCHECK_CASES = [
    (tf.float64, (1, 3, 4, 2, 1, 4), {"is_causal": True}),
    (tf.float64, (2, 2, 3, 2, 2, 3), {"bias": (1, 2, 2, 3), "mask": (2, 1, 1, 3)}),
    (tf.float32, (2, 5, 6, 4, 2, 8), {"bias": (2, 4, 5, 6)}),
    (tf.float16, (1, 4, 6, 2, 1, 8), {"is_causal": True}),
    (tf.bfloat16, (1, 4, 6, 2, 2, 8), {}),
]


@pytest.mark.parametrize("dtype,sizes,extra", OPCHECK_CASES, ids=lambda v: getattr(v, "name", None))
def test_opcheck(dtype, sizes, extra):
    """Static shapes, eager vs graph (unknown dims), compiled vs reference,
    numeric vs analytic gradients (float64) and against the reference's,
    XLA, eight threads at once."""
    (q, k, v), kwargs = build(sizes, extra, dtype)
    bias = kwargs.pop("bias", None)
    mask = kwargs.pop("mask", None)
    args = [q, k, v] + ([bias] if bias is not None else [])
    if mask is not None:
        kwargs["mask"] = mask
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    half = {tf.float16: 4e-2, tf.bfloat16: 2.4e-1}.get(dtype)
    report = opcheck(attention.dot_product_attention, args, kwargs, checks=checks, atol=half, rtol=half)
    assert all(r.status == "passed" for r in report.results.values()), report


def test_opcheck_saved_model_and_bad_inputs():
    (q, k, v), _ = build((2, 3, 4, 2, 1, 4), {}, tf.float32)
    bad = [
        ([q[0], k, v], {}),
        ([q, k[:, :, :, :3], v[:, :, :, :3]], {}),
        ([q, k, v], {"dropout_rate": 1.0}),
        ([q, k, v], {"mask": tf.ones([5], tf.bool)}),
    ]
    report = opcheck(
        attention.dot_product_attention,
        [q, k, v],
        {"is_causal": True},
        checks=["saved_model", "bad_inputs"],
        bad_inputs=bad,
    )
    assert all(r.status == "passed" for r in report.results.values()), report


# Dropout ---------------------------------------------------------------------


def kept(seed, shape, rate, backend):
    """The keep mask the op applies, read through the op itself: uniform
    probabilities (zero queries) over one-hot values give
    output[b, t, n, s] = keep(b, n, t, s) / (S (1 - rate))."""
    batch, heads, target, source = shape
    q = tf.zeros([batch, target, heads, source], tf.float64)
    k = tf.zeros([batch, source, 1, source], tf.float64)
    v = tf.tile(tf.eye(source, dtype=tf.float64)[None, :, None, :], [batch, 1, 1, 1])
    y = attention.dot_product_attention(q, k, v, dropout_rate=rate, seed=seed, backend=backend)
    scaled = y.numpy() * source * (1 - np.float64(np.float32(rate)))
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-9)
    return np.transpose(np.round(scaled).astype(bool), (0, 2, 1, 3))


def numpy_keep(seed, shape, rate):
    """The dropout hash in NumPy uint32 arithmetic, from its definition."""

    def mix(h, v):
        with np.errstate(over="ignore"):
            h = (np.uint32(h) ^ np.uint32(v)) + np.uint32(0x9E3779B9)
            h ^= h >> np.uint32(16)
            h *= np.uint32(0x85EBCA6B)
            h ^= h >> np.uint32(13)
            h *= np.uint32(0xC2B2AE35)
            return h ^ (h >> np.uint32(16))

    key = np.uint32(0)
    for word in seed:
        word = int(word) % 2**64
        key = mix(mix(key, word & 0xFFFFFFFF), word >> 32)
    b, n, t, s = np.meshgrid(*(np.arange(d, dtype=np.uint32) for d in shape), indexing="ij")
    bits = mix(mix(mix(mix(mix(key, b), n), t), s), np.uint32(0))
    return bits >= np.uint32(int(float(np.float32(rate)) * 2**32))


@pytest.mark.parametrize("seed", [7, [123456789012, -5]])
def test_dropout_keep_mask_is_the_same_hash_in_the_kernels_and_the_reference(seed):
    shape, rate = (2, 3, 5, 70), 0.3
    seed_tensor = attention._seed_tensor(seed, rate)
    want = numpy_keep(seed_tensor.numpy(), shape, rate)
    np.testing.assert_array_equal(attention.dropout_keep_mask(seed_tensor, shape, rate).numpy(), want)
    for backend in BACKENDS:
        np.testing.assert_array_equal(kept(seed, shape, rate, backend), want)


def test_dropout_keeps_one_minus_the_rate():
    for rate in (0.1, 0.5, 0.9):
        fraction = attention.dropout_keep_mask(tf.constant([3, 4], tf.int64), [4, 8, 64, 64], rate).numpy().mean()
        # 131072 draws: 5 standard deviations of a binomial proportion.
        assert abs(fraction - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / 131072), (rate, fraction)
    masks = [attention.dropout_keep_mask(tf.constant([s, 0], tf.int64), [1, 1, 16, 64], 0.5).numpy() for s in (1, 2)]
    assert 0.4 < np.mean(masks[0] == masks[1]) < 0.6  # two seeds: independent masks


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_same_seed_same_result_and_rate_zero_is_exact(backend):
    (q, k, v), _ = build((2, 6, 9, 4, 2, 8), {}, tf.float32)
    run = lambda **kw: attention.dot_product_attention(q, k, v, backend=backend, **kw).numpy()  # noqa: E731
    first, again = run(dropout_rate=0.4, seed=11), run(dropout_rate=0.4, seed=11)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, run(dropout_rate=0.4, seed=12))
    np.testing.assert_array_equal(run(dropout_rate=0.0, seed=11), run())
    seed = tf.constant([11, 0], tf.int32)
    np.testing.assert_array_equal(run(dropout_rate=0.4, seed=seed), first)


def test_dropout_forward_and_gradients_match_the_reference():
    args, kwargs = build((2, 40, 70, 4, 2, 8), {"bias": (1, 4, 40, 70), "is_causal": True}, tf.float64)
    kwargs.update(dropout_rate=0.25, seed=[5, 6])
    want_y = numpy_expected(args, kwargs)
    keep = numpy_keep([5, 6], (2, 4, 40, 70), 0.25)
    q, k, v = (to_numpy64(a) for a in args)
    want = numpy_attention(q, k, v, to_numpy64(kwargs["bias"]), None, None, True, keep, 0.25)
    assert not np.allclose(want, want_y)
    for backend in BACKENDS:
        got = attention.dot_product_attention(*args, **kwargs, backend=backend)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)
    compiled = gradients(args, kwargs, "compiled")
    reference = gradients(args, kwargs, "reference")
    for got, want in zip(compiled, reference, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)


def test_dropout_seed_from_a_keras_seed_generator():
    (q, k, v), _ = build((1, 4, 5, 2, 2, 4), {}, tf.float32)
    generator = keras.random.SeedGenerator(5)
    seed = generator.next()
    first = attention.dot_product_attention(q, k, v, dropout_rate=0.5, seed=seed, backend="compiled")
    again = attention.dot_product_attention(q, k, v, dropout_rate=0.5, seed=seed, backend="reference")
    np.testing.assert_allclose(first.numpy(), again.numpy(), rtol=1e-5, atol=1e-5)


# Bad inputs ------------------------------------------------------------------

Q, K = (2, 3, 4, 8), (2, 5, 2, 8)

BAD_INPUTS = [
    ("query must have rank 4 ([batch, target, heads, head_dim]), got shape [3,4,8]", (Q[1:], K, K), {}),
    ("key must have rank 4 ([batch, source, kv_heads, head_dim]), got shape [5,2,8]", (Q, K[1:], K[1:]), {}),
    ("value must have the shape of key [2,5,2,8], got shape [2,6,2,8]", (Q, K, (2, 6, 2, 8)), {}),
    (
        "key must have the batch size and head_dim of query [2,3,4,8] (dimensions 0 and 3), got shape [3,5,2,8]",
        (Q, (3, 5, 2, 8), (3, 5, 2, 8)),
        {},
    ),
    ("key must have the batch size and head_dim of query", (Q, (2, 5, 2, 7), (2, 5, 2, 7)), {}),
    (
        "key must have a number of heads that divides the number of query heads 4 (query [2,3,4,8]), got 3 in "
        "shape [2,5,3,8]",
        (Q, (2, 5, 3, 8), (2, 5, 3, 8)),
        {},
    ),
    (
        "bias must be broadcastable to the logits [batch, heads, target, source] [2,4,3,5] (rank 4, each size 1 or "
        "the logits' size), got shape [1,1,3,4]",
        (Q, K, K),
        {"bias": (3, 4)},
    ),
    ("mask must be broadcastable to the logits", (Q, K, K), {"mask": (2, 2, 3, 5)}),
    ("bias must be broadcastable to the logits", (Q, K, K), {"bias": (1, 2, 4, 3, 5)}),
    ("dropout_rate must be in [0, 1), got 1", (Q, K, K), {"dropout_rate": 1.0}),
    ("dropout_rate must be in [0, 1), got -0.1", (Q, K, K), {"dropout_rate": -0.1}),
    ("scale must be a finite float, got inf", (Q, K, K), {"scale": float("inf")}),
]


def bad_call(shapes, extra, backend):
    tensors = [tf.ones(s) for s in shapes]
    kwargs = dict(extra)
    if "bias" in kwargs:
        kwargs["bias"] = tf.ones(kwargs["bias"])
    if "mask" in kwargs:
        kwargs["mask"] = tf.ones(kwargs["mask"], tf.bool)
    return attention.dot_product_attention(*tensors, **kwargs, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("message,shapes,extra", BAD_INPUTS, ids=[b[0][:40] for b in BAD_INPUTS])
def test_bad_inputs_raise_invalid_argument_naming_the_argument(message, shapes, extra, backend):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        bad_call(shapes, extra, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_dtypes_raise_invalid_argument(backend):
    q = tf.ones(Q)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must have dtype bool, got float32"):
        attention.dot_product_attention(q, tf.ones(K), tf.ones(K), mask=tf.ones([5]), backend=backend)
    wrong_key = re.escape("key must have dtype float32 (the dtype of query)")
    with pytest.raises(tf.errors.InvalidArgumentError, match=wrong_key):
        attention.dot_product_attention(q, tf.ones(K, tf.float64), tf.ones(K), backend=backend)
    with pytest.raises(tf.errors.InvalidArgumentError, match="query must have a float dtype"):
        attention.dot_product_attention(tf.ones(Q, tf.int32), tf.ones(K, tf.int32), tf.ones(K, tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="seed must be an int or an integer tensor of shape"):
        attention.dot_product_attention(q, tf.ones(K), tf.ones(K), dropout_rate=0.1, seed=tf.ones([3], tf.int64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_shapes_caught_at_run_time_under_unknown_dims(backend):
    spec = tf.TensorSpec([None] * 4, tf.float32)
    f = tf.function(
        lambda q, k, v, m: attention.dot_product_attention(q, k, v, mask=m, backend=backend),
        input_signature=[spec, spec, spec, tf.TensorSpec([None] * 4, tf.bool)],
    )
    mask = tf.ones([2, 1, 1, 5], tf.bool)
    f(tf.ones(Q), tf.ones(K), tf.ones(K), mask)  # well-formed
    cases = [
        (
            "key must have a number of heads that divides the number of query heads",
            (Q, (2, 5, 3, 8), (2, 5, 3, 8), mask),
        ),
        ("value must have the shape of key", (Q, K, (2, 6, 2, 8), mask)),
        ("key must have the batch size and head_dim of query", (Q, (2, 5, 2, 4), (2, 5, 2, 4), mask)),
        ("mask must be broadcastable to the logits", (Q, K, K, tf.ones([2, 1, 1, 4], tf.bool))),
    ]
    for message, (q, k, v, m) in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            f(tf.ones(q), tf.ones(k), tf.ones(v), m)


def raw_call(library, **changes):
    args = {
        "query": np.ones(Q, np.float32),
        "key": np.ones(K, np.float32),
        "value": np.ones(K, np.float32),
        "bias": np.zeros([0], np.float32),
        "mask": np.zeros([0], bool),
        "seed": np.zeros([2], np.int64),
        "U": tf.float32,
    }
    return library.tfkit_dot_product_attention(**{**args, **changes})


STATIC_SHAPE_ERRORS = [
    (
        "query must have rank 4 ([batch, target, heads, head_dim]), got shape [3,4,8]",
        {"query": np.ones(Q[1:], np.float32)},
    ),
    ("value must have the shape of key [2,5,2,8], got shape [2,5,2,4]", {"value": np.ones([2, 5, 2, 4], np.float32)}),
    (
        "bias must be broadcastable to the logits [batch, heads, target, source] [2,4,3,5] (rank 4, each size 1 or the "
        "logits' size), got shape [5]",
        {"bias": np.ones([5], np.float32), "has_bias": True},
    ),
    ("seed must have shape [2], got shape [3]", {"seed": np.zeros([3], np.int64)}),
    ("dropout_rate must be in [0, 1), got 1.5", {"dropout_rate": 1.5}),
    (
        "lse (attr U) must have dtype float for query of dtype float (double for double query, float for the other "
        "types), got double",
        {"U": tf.float64},
    ),
]


@pytest.mark.parametrize("says,changes", STATIC_SHAPE_ERRORS, ids=[c[0][:40] for c in STATIC_SHAPE_ERRORS])
def test_shape_functions_name_the_argument_as_the_kernels_do(says, changes):
    library = tfkit.load_library()
    kernel, shape_function = kernel_and_shape_function_errors(lambda: raw_call(library, **changes))
    assert kernel == shape_function == says


def test_traced_output_shapes_are_as_static_as_inputs():
    f = tf.function(lambda q, k, v: attention.dot_product_attention(q, k, v, backend="compiled"))
    graph = f.get_concrete_function(
        tf.TensorSpec([None, 7, 4, None], tf.float32),
        tf.TensorSpec([2, None, 2, 8], tf.float32),
        tf.TensorSpec(None, tf.float32),
    )
    assert graph.structured_outputs.shape.as_list() == [2, 7, 4, 8]


THREADS_SCRIPT = """
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from tests.ops.test_attention import build, gradients
args, kwargs = build(SIZES, EXTRA, tf.float32)
np.save(PATH, np.concatenate([g.numpy().ravel() for g in gradients(args, kwargs, "compiled")]))
"""

# With a bias the query gradient has a pass of its own; without one it is
# summed from parts per chunk of keys (here 4 chunks of 2 blocks each).
THREAD_CASES = [
    ((2, 70, 90, 4, 2, 16), {"bias": (1, 4, 70, 1), "is_causal": True}),
    ((1, 300, 1000, 2, 1, 8), {"is_causal": True}),
]


@pytest.mark.parametrize("sizes,extra", THREAD_CASES, ids=["bias", "key_chunks"])
def test_gradients_do_not_depend_on_the_thread_count(tmp_path, sizes, extra):
    path = tmp_path / "one_thread.npy"
    script = THREADS_SCRIPT.replace("PATH", repr(str(path))).replace("SIZES", repr(sizes)).replace("EXTRA", repr(extra))
    result = run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    args, kwargs = build(sizes, extra, tf.float32)
    here = np.concatenate([g.numpy().ravel() for g in gradients(args, kwargs, "compiled")])
    np.testing.assert_array_equal(here, np.load(path))


@pytest.mark.parametrize("extra", [{}, {"is_causal": True}, {"mask": "padding"}], ids=["plain", "causal", "padding"])
def test_long_rows_match_the_reference_in_float64(extra):
    """Several chunks of queries in the forward and of keys in the backward
    (whose query gradient parts are summed), against the reference."""
    args, kwargs = build((2, 300, 1000, 2, 1, 8), extra, tf.float64)
    compiled = attention.dot_product_attention(*args, **kwargs, backend="compiled")
    reference = attention.dot_product_attention(*args, **kwargs, backend="reference")
    np.testing.assert_allclose(compiled.numpy(), reference.numpy(), rtol=1e-9, atol=1e-9)
    for got, want in zip(gradients(args, kwargs, "compiled"), gradients(args, kwargs, "reference"), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)
