"""Every op and its gradient on inputs holding NaN, +-inf, +-the largest
finite value and subnormals: the compiled kernels and the pure-TensorFlow
reference give the same answer (NaN where the other has NaN, the same
infinities, finite values to tolerance).

One case per (op, input, special value): the value goes into one element of
one float input, the rest is ordinary data. A new family adds its ops to
CASES."""

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tfkit.ops.activation import ACTIVATIONS
from tfkit.tolerances import TOLERANCES

SPECIALS = {
    "nan": np.nan,
    "inf": np.inf,
    "-inf": -np.inf,
    "max": "max",
    "-max": "-max",
    "subnormal": "tiny",
    "-subnormal": "-tiny",
}


_SMALLEST_SUBNORMAL = {"float32": 2.0**-149, "bfloat16": 2.0**-133, "float16": 2.0**-24, "float64": 2.0**-1074}


def _special(name, dtype):
    value = SPECIALS[name]
    if isinstance(value, str):
        magnitude = dtype.max if value.endswith("max") else _SMALLEST_SUBNORMAL[dtype.name]
        value = -float(magnitude) if value.startswith("-") else float(magnitude)
    return value


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def _activation_case(op_name, activation):
    def build(dtype):
        if op_name == "bias_activation":
            inputs = {"x": _normal((3, 6), 0), "bias": _normal((6,), 1)}
            return inputs, lambda x, bias, backend: tfkit.ops.bias_activation(
                x, bias, activation=activation, backend=backend
            )
        return {"x": _normal((3, 6), 0)}, lambda x, backend: tfkit.ops.gated_activation(
            x, activation=activation, backend=backend
        )

    return build


def _layer_norm(dtype):
    inputs = {"x": _normal((4, 8), 0), "gamma": _normal((8,), 1), "beta": _normal((8,), 2)}
    return inputs, lambda x, gamma, beta, backend: tfkit.ops.layer_norm(x, gamma, beta, backend=backend)


def _rms_norm(dtype):
    inputs = {"x": _normal((4, 8), 0), "gamma": _normal((8,), 1)}
    return inputs, lambda x, gamma, backend: tfkit.ops.rms_norm(x, gamma, backend=backend)


def _rotary(dtype):
    return {"x": _normal((2, 5, 3, 8), 0)}, lambda x, backend: tfkit.ops.rotary_embedding(x, backend=backend)


def _embedding_bag(combiner):
    def build(dtype):
        indices = tf.ragged.constant([[0, 2, 2], [], [1, 3]], dtype=tf.int64)
        inputs = {"params": _normal((4, 5), 0), "weights": np.abs(_normal((5,), 1)) + 0.5}

        def run(params, weights, backend):
            ragged_weights = tf.RaggedTensor.from_row_splits(weights, indices.row_splits)
            return tfkit.ops.embedding_bag(indices, params, ragged_weights, combiner=combiner, backend=backend)

        return inputs, run

    return build


def _resampler(dtype):
    warp = np.random.default_rng(1).uniform(-1.5, 5.5, size=(2, 3, 4, 2))
    inputs = {"data": _normal((2, 4, 5, 3), 0), "warp": warp}
    return inputs, lambda data, warp, backend: tfkit.ops.resampler(data, warp, backend=backend)


def _dense_image_warp(dtype):
    inputs = {"image": _normal((2, 4, 5, 3), 0), "flow": 2.0 * _normal((2, 4, 5, 2), 1)}
    return inputs, lambda image, flow, backend: tfkit.image.dense_image_warp(image, flow, backend=backend)


def _attention(is_causal):
    def build(dtype):
        inputs = {
            "query": _normal((2, 3, 4, 8), 0),
            "key": _normal((2, 5, 2, 8), 1),
            "value": _normal((2, 5, 2, 8), 2),
            "bias": _normal((4, 3, 5), 3),
        }
        mask = tf.constant(np.random.default_rng(4).uniform(size=(2, 1, 3, 5)) < 0.8)

        def run(query, key, value, bias, backend):
            return tfkit.ops.dot_product_attention(
                query, key, value, bias=bias, mask=mask, is_causal=is_causal, backend=backend
            )

        return inputs, run

    return build


CASES = {
    **{f"bias_activation-{a}": _activation_case("bias_activation", a) for a in ACTIVATIONS},
    **{f"gated_activation-{a}": _activation_case("gated_activation", a) for a in ACTIVATIONS},
    "layer_norm": _layer_norm,
    "rms_norm": _rms_norm,
    "rotary_embedding": _rotary,
    **{f"embedding_bag-{c}": _embedding_bag(c) for c in ("sum", "mean", "sqrtn")},
    "resampler": _resampler,
    "dense_image_warp": _dense_image_warp,
    "dot_product_attention": _attention(False),
    "dot_product_attention-causal": _attention(True),
}
DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]

# Cases left without the largest finite values: attention's logits of such
# an input are near float32's overflow, and where its probabilities are one
# in a row the gradients of the logits are rounding noise (p * (dp - delta)
# with dp == delta) times that value, in the reference as in the kernels
# (neither matches the float64 oracle there).
WITHOUT_MAX = {"dot_product_attention", "dot_product_attention-causal"}

# Cases whose reference is judged under XLA: TensorFlow's float32 softmax
# (oneDNN's kernel) keeps a NaN logit's NaN to its own place and gives the
# rest of its row 0, while its float64 kernel, XLA's and tfkit's spread it
# over the row; the rule the kernels follow is XLA's.
REFERENCE_UNDER_XLA = WITHOUT_MAX


def _with_special(inputs, name, special, dtype):
    arrays = {key: np.array(value, np.float64) for key, value in inputs.items()}
    flat = arrays[name].reshape(-1)
    flat[flat.size // 2] = _special(special, dtype)
    return {key: tf.cast(value, dtype) for key, value in arrays.items()}


def _run(function, tensors, backend, jit_compile=False):
    """The op's result and its gradients for every float input."""
    if jit_compile:
        return tf.function(lambda tensors: _run(function, tensors, backend), jit_compile=True)(tensors)
    with tf.GradientTape() as tape:
        tape.watch(list(tensors.values()))
        y = function(**tensors, backend=backend)
        weights = tf.cast(np.random.default_rng(7).normal(size=y.shape), y.dtype)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(weights, tf.float32))
    grads = tape.gradient(loss, tensors)
    return {"y": y, **{f"d{key}": grad for key, grad in grads.items()}}


def _numpy(t):
    return tf.cast(tf.convert_to_tensor(t), tf.float64).numpy()


def assert_agree(compiled, reference, oracle, special, dtype, what):
    """compiled and reference agree on NaN, the infinities and finite values.

    NaN inputs and subnormals: NaN in the same places. Two evaluation orders
    of one formula may honestly differ in two places, and the comparison
    allows exactly those:
    - an infinite input, or the largest finite value (whose products
      overflow): inf - inf is NaN in one order and the infinite limit in
      another, so there both backends need only be non-finite in the same
      places;
    - the largest finite value: an intermediate may overflow in one order
      only; the compiled result may then be finite where the reference is
      not, if it equals the float64 oracle (the reference run in float64 on
      the same values) rounded to the dtype.
    """
    compiled, reference, oracle = _numpy(compiled), _numpy(reference), _numpy(oracle)
    rtol, atol = TOLERANCES[dtype].reference
    if special.endswith("max"):
        right = _same(compiled, tf.cast(oracle, dtype).numpy().astype(np.float64), rtol, atol)
        compiled = np.where(right & ~_same(compiled, reference, rtol, atol), reference, compiled)
    strict = not special.endswith(("inf", "max"))
    nan_c, nan_r = (np.isnan(a) if strict else ~np.isfinite(a) for a in (compiled, reference))
    assert np.array_equal(nan_c, nan_r), (
        f"{what}: {'NaN' if strict else 'non-finite'} at {np.argwhere(nan_c ^ nan_r)[:5].tolist()} "
        f"in one backend only: compiled {compiled[nan_c ^ nan_r][:5]}, reference {reference[nan_c ^ nan_r][:5]}"
    )
    both = np.isinf(compiled) & np.isinf(reference)
    assert np.array_equal(np.sign(compiled[both]), np.sign(reference[both])), f"{what}: infinities of opposite sign"
    finite = np.isfinite(compiled) & np.isfinite(reference)
    np.testing.assert_allclose(compiled[finite], reference[finite], rtol=rtol, atol=atol, err_msg=what)


def _same(a, b, rtol, atol):
    with np.errstate(invalid="ignore"):
        close = np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= atol + rtol * np.abs(b))
    return close | (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("case", CASES)
def test_special_values_agree_on_both_backends(case, dtype):
    inputs, function = CASES[case](dtype)
    # float64 has no wider oracle to judge a finite result beside an
    # overflowing one, so its largest value is left out.
    specials = [s for s in SPECIALS if not ((dtype == tf.float64 or case in WITHOUT_MAX) and s.endswith("max"))]
    for name in inputs:
        for special in specials:
            tensors = _with_special(inputs, name, special, dtype)
            compiled = _run(function, tensors, "compiled")
            reference = _run(function, tensors, "reference", jit_compile=case in REFERENCE_UNDER_XLA)
            oracle = _run(function, {k: tf.cast(v, tf.float64) for k, v in tensors.items()}, "reference")
            for key in compiled:
                what = f"{case}: {special} in {name}, {key}"
                assert_agree(compiled[key], reference[key], oracle[key], special, dtype, what)
