"""tfkit.layers.MultiHeadAttention against keras.layers.MultiHeadAttention,
and tfkit.use_fused_attention."""

from pathlib import Path

import keras
import keras.src.backend.tensorflow.nn as keras_tf_nn
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tfkit.ops import attention as attention_ops

RNG = np.random.default_rng(0)
QUERY = RNG.normal(size=(2, 5, 12)).astype("float32")
SOURCE = RNG.normal(size=(2, 7, 12)).astype("float32")  # cross-attention: S != T
PADDING = np.array([[True] * 7, [True] * 4 + [False] * 3])
MASK = RNG.random((2, 5, 7)) > 0.3
SELF_MASK = RNG.random((2, 5, 5)) > 0.3


@pytest.fixture
def fused_calls(monkeypatch) -> list:
    """Counts the calls of tfkit.ops.dot_product_attention (one entry each,
    the keyword arguments it got)."""
    calls = []
    op = attention_ops.dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return op(*args, **kwargs)

    monkeypatch.setattr(attention_ops, "dot_product_attention", counting)
    return calls


def twins(*args, inputs=(QUERY, SOURCE), **kwargs):
    """Keras's layer and tfkit's, built on `inputs`, with the same weights."""
    theirs = keras.layers.MultiHeadAttention(*args, **kwargs)
    ours = tfkit.layers.MultiHeadAttention(*args, **kwargs)
    theirs(*inputs)
    ours(*inputs)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def outputs_and_gradients(layer, query, value, **call):
    """The layer's output and the gradients of a loss on it for the inputs and weights."""
    query, value = tf.constant(query), tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch([query, value])
        output = layer(query, value, **call)
        loss = tf.reduce_sum(output * tf.cos(output))
    return [output, *tape.gradient(loss, [query, value, *layer.trainable_weights])]


CASES = {
    "cross": (SOURCE, {}),
    "self": (QUERY, {}),
    "attention_mask": (SOURCE, {"attention_mask": MASK}),
    "causal": (QUERY, {"use_causal_mask": True}),
    "causal_cross": (SOURCE, {"use_causal_mask": True}),
    "causal_and_mask": (QUERY, {"use_causal_mask": True, "attention_mask": SELF_MASK}),
    "value_mask": (SOURCE, {"value_mask": PADDING}),
    "mask_of_rank_2": (SOURCE, {"attention_mask": MASK[0]}),
}


@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_are_kerass_with_the_same_weights(case, fused_calls):
    source, call = CASES[case]
    theirs, ours = twins(num_heads=3, key_dim=4)
    fused_calls.clear()
    expected = outputs_and_gradients(theirs, QUERY, source, **call)
    got = outputs_and_gradients(ours, QUERY, source, **call)
    assert len(fused_calls) == 1
    causal_only = call == {"use_causal_mask": True}
    assert fused_calls[0]["is_causal"] is causal_only, "is_causal where the causal mask is the only one"
    assert (fused_calls[0]["mask"] is None) is (causal_only or not call)
    assert len(got) == len(expected) == 3 + 8
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_a_causal_mask_is_top_left_aligned_as_kerass():
    _, ours = twins(num_heads=2, key_dim=4)
    causal = np.tril(np.ones((5, 7), bool))[None]
    np.testing.assert_allclose(
        ours(QUERY, SOURCE, use_causal_mask=True), ours(QUERY, SOURCE, attention_mask=causal), rtol=1e-6, atol=1e-6
    )


# Inputs of rank 4: attention over axis 1 or 2, the other axis folded into the batch.
HIGH_QUERY = RNG.normal(size=(2, 5, 3, 12)).astype("float32")
HIGH_SOURCE = RNG.normal(size=(2, 7, 3, 12)).astype("float32")
HIGH_CASES = {
    "axis_1": ((1,), (HIGH_QUERY, HIGH_SOURCE), {"attention_mask": MASK[:, None]}),
    "axis_1_causal": ((1,), (HIGH_QUERY, HIGH_QUERY), {"use_causal_mask": True}),
    "axis_2": ((2,), (HIGH_QUERY.transpose(0, 2, 1, 3), HIGH_SOURCE.transpose(0, 2, 1, 3)), {}),
    "axis_2_mask": (
        (2,),
        (HIGH_QUERY.transpose(0, 2, 1, 3), HIGH_SOURCE.transpose(0, 2, 1, 3)),
        {"attention_mask": RNG.random((2, 3, 5, 7)) > 0.3},
    ),
    "axis_2_padding": ((2,), (HIGH_QUERY, HIGH_QUERY), {"attention_mask": SELF_MASK[:, None, :3, :3]}),
}


@pytest.mark.parametrize("case", HIGH_CASES)
def test_one_attention_axis_of_higher_rank_inputs_is_fused(case, fused_calls):
    axes, (query, source), call = HIGH_CASES[case]
    theirs, ours = twins(num_heads=2, key_dim=4, attention_axes=axes, inputs=(query, source))
    fused_calls.clear()
    expected = outputs_and_gradients(theirs, query, source, **call)
    got = outputs_and_gradients(ours, query, source, **call)
    assert len(fused_calls) == 1 and fused_calls[0]["is_causal"] is ("use_causal_mask" in call)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "call"),
    [
        ({}, {"return_attention_scores": True}),
        ({"attention_axes": (1, 2)}, {}),
        ({"value_dim": 6}, {}),
    ],
    ids=["attention_scores", "two_attention_axes", "value_dim"],
)
def test_keras_computes_what_the_fused_op_cannot(config, call, fused_calls):
    inputs = (HIGH_QUERY, HIGH_SOURCE) if "attention_axes" in config else (QUERY, SOURCE)
    theirs, ours = twins(num_heads=2, key_dim=4, inputs=inputs, **config)
    fused_calls.clear()
    got, expected = ours(*inputs, **call), theirs(*inputs, **call)
    assert fused_calls == []
    for g, e in zip(tf.nest.flatten(got), tf.nest.flatten(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


def test_a_causal_mask_over_another_axis_than_1_is_kerass_own(fused_calls):
    """Keras builds its causal mask over axis 1 of the inputs, whatever the
    attention axis: with attention over axis 2 that is Keras's computation
    (and here Keras's error)."""
    theirs, ours = twins(num_heads=2, key_dim=4, attention_axes=(2,), inputs=(HIGH_QUERY, HIGH_QUERY))
    fused_calls.clear()
    errors = []
    for layer in (theirs, ours):
        with pytest.raises(ValueError, match="The `mask` must be broadcastable") as caught:
            layer(HIGH_QUERY, HIGH_QUERY, use_causal_mask=True)
        errors.append(str(caught.value).replace(layer.name, "layer"))
    assert errors[0] == errors[1] and fused_calls == []


def test_a_query_whose_every_key_is_masked_gets_what_kerass_layer_gives(fused_calls):
    """The mean of the values where Keras runs dot_product_attention, zeros
    where it runs its masked softmax (with dropout; inputs of rank 4 are in
    the higher-rank cases above)."""
    mask = np.ones((2, 5, 7), bool)
    mask[1, 3] = False
    for dropout in (0.0, 0.2):
        theirs, ours = twins(num_heads=2, key_dim=4, dropout=dropout)
        fused_calls.clear()
        expected = theirs(QUERY, SOURCE, attention_mask=mask)
        np.testing.assert_allclose(ours(QUERY, SOURCE, attention_mask=mask), expected, rtol=1e-5, atol=1e-6)
        assert len(fused_calls) == 1
        mean_of_values = theirs.output_dense(tf.reduce_mean(theirs.value_dense(SOURCE[1:]), 1, keepdims=True))[0, 0]
        if dropout:
            np.testing.assert_array_equal(expected[1, 3], np.zeros(12))
        else:
            np.testing.assert_allclose(expected[1, 3], mean_of_values, rtol=1e-5, atol=1e-6)


def dropout_layer(seed: int, **kwargs):
    keras.utils.set_random_seed(seed)
    layer = tfkit.layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.3, **kwargs)
    layer(QUERY, SOURCE)
    return layer


def test_dropout_is_the_kernels_reproducible_and_only_in_training(fused_calls):
    first, again, other = dropout_layer(7), dropout_layer(7), dropout_layer(8)
    fused_calls.clear()
    trained = first(QUERY, SOURCE, training=True)
    assert fused_calls[0]["dropout_rate"] == pytest.approx(0.3) and fused_calls[0]["seed"] is not None
    np.testing.assert_array_equal(again(QUERY, SOURCE, training=True), trained)
    assert np.abs(other(QUERY, SOURCE, training=True) - trained).max() > 1e-2
    assert np.abs(first(QUERY, SOURCE, training=True) - trained).max() > 1e-2, "a new mask each step"

    # The same seed state through the pure-TF reference: the same mask, bit for bit.
    reference = dropout_layer(7, backend="reference")
    np.testing.assert_allclose(reference(QUERY, SOURCE, training=True), trained, rtol=1e-5, atol=1e-6)

    inference = tfkit.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    inference(QUERY, SOURCE)
    inference.set_weights(first.get_weights())
    fused_calls.clear()
    for training in (False, None):
        np.testing.assert_array_equal(first(QUERY, SOURCE, training=training), inference(QUERY, SOURCE))
    assert [call["dropout_rate"] for call in fused_calls] == [0.0] * 4


def test_config_weights_and_defaults_are_kerass():
    theirs, ours = twins(num_heads=2, key_dim=4, value_dim=4, dropout=0.1, use_bias=False)
    config = ours.get_config()
    assert config.pop("backend") is None
    names = ("name", "dtype")
    assert {k: v for k, v in config.items() if k not in names} == {
        k: v for k, v in theirs.get_config().items() if k not in names
    }
    assert [(w.name, w.shape) for w in ours.weights] == [(w.name, w.shape) for w in theirs.weights]
    assert ours.supports_jit and not tfkit.layers.MultiHeadAttention(2, 4, backend="compiled").supports_jit


def test_weights_load_either_way(tmp_path):
    theirs, ours = twins(num_heads=2, key_dim=4)
    for source_layer, cls in ((theirs, tfkit.layers.MultiHeadAttention), (ours, keras.layers.MultiHeadAttention)):
        path = str(tmp_path / f"{type(source_layer).__module__}.weights.h5")
        keras.Model(*io_of(source_layer)).save_weights(path)
        target = cls(num_heads=2, key_dim=4)
        model = keras.Model(*io_of(target))
        model.load_weights(path)
        np.testing.assert_allclose(target(QUERY, SOURCE), source_layer(QUERY, SOURCE), rtol=1e-5, atol=1e-6)


def io_of(layer):
    query, source = keras.Input([5, 12]), keras.Input([7, 12])
    return [query, source], layer(query, source)


def attention_model(**layer_kwargs) -> keras.Model:
    keras.utils.set_random_seed(3)
    query, source = keras.Input([5, 12]), keras.Input([7, 12])
    h = tfkit.layers.MultiHeadAttention(num_heads=2, key_dim=4, **layer_kwargs)(query, source, use_causal_mask=True)
    return keras.Model([query, source], keras.layers.Dense(3)(keras.layers.Flatten()(h)))


def test_keras_file_round_trip(tmp_path):
    model = attention_model(dropout=0.2, backend="reference")
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    layer = loaded.layers[2]
    assert type(layer) is tfkit.layers.MultiHeadAttention and layer.backend == "reference" and layer.dropout == 0.2
    np.testing.assert_allclose(loaded.predict([QUERY, SOURCE], verbose=0), model.predict([QUERY, SOURCE], verbose=0))


def test_under_jit_compile_the_reference_runs_with_the_same_results():
    model = attention_model()
    compiled = tf.function(lambda q, s: model([q, s]), jit_compile=True)
    np.testing.assert_allclose(compiled(QUERY, SOURCE), model([QUERY, SOURCE]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_fit_trains_with_dropout(jit_compile):
    model = attention_model(dropout=0.1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=jit_compile)
    target = RNG.normal(size=(2, 3)).astype("float32")
    losses = model.fit([QUERY, SOURCE], target, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


# tfkit.use_fused_attention ----------------------------------------------------------

KERAS_ATTENTION = keras_tf_nn.dot_product_attention


@pytest.fixture
def routed():
    assert tfkit.use_fused_attention() is False
    yield
    assert tfkit.use_fused_attention(False) is True
    assert keras_tf_nn.dot_product_attention is KERAS_ATTENTION


def heads(x, n):
    return x.reshape(*x.shape[:2], n, -1)


def keras_attention_args():
    query, key, value = heads(QUERY, 4), heads(SOURCE[..., :6], 2), heads(SOURCE[..., 6:], 2)  # GQA
    bias = RNG.normal(size=(1, 4, 5, 7)).astype("float32")
    return (query, key, value), {"bias": bias, "mask": MASK[:, None], "is_causal": True}


def test_keras_dot_product_attention_runs_the_fused_op(routed, fused_calls):
    args, kwargs = keras_attention_args()
    got = keras.ops.dot_product_attention(*args, **kwargs)
    flash = keras.ops.dot_product_attention(*args, **kwargs, flash_attention=True)
    assert len(fused_calls) == 2
    expected = KERAS_ATTENTION(*args, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(flash, got)
    assert tfkit.use_fused_attention() is True, "already on"


def test_kerass_multi_head_attention_runs_the_fused_op(fused_calls):
    layer = keras.layers.MultiHeadAttention(num_heads=3, key_dim=4)
    expected = outputs_and_gradients(layer, QUERY, SOURCE, attention_mask=MASK)
    assert tfkit.use_fused_attention() is False
    try:
        got = outputs_and_gradients(layer, QUERY, SOURCE, attention_mask=MASK)
        causal = layer(QUERY, QUERY, use_causal_mask=True)
    finally:
        assert tfkit.use_fused_attention(False) is True
    assert [call.get("is_causal") for call in fused_calls] == [False, True]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(causal, layer(QUERY, QUERY, use_causal_mask=True), rtol=1e-6, atol=1e-6)


def test_kerass_grouped_query_attention_runs_the_fused_op(routed, fused_calls):
    layer = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
    got = layer(QUERY, SOURCE, attention_mask=MASK)
    assert len(fused_calls) == 1
    tfkit.use_fused_attention(False)
    np.testing.assert_allclose(got, layer(QUERY, SOURCE, attention_mask=MASK), rtol=1e-5, atol=1e-6)
    tfkit.use_fused_attention(True)


def test_disabling_restores_kerass_function(fused_calls):
    assert tfkit.use_fused_attention(False) is False
    assert tfkit.use_fused_attention() is False
    assert tfkit.use_fused_attention(False) is True
    assert keras_tf_nn.dot_product_attention is KERAS_ATTENTION
    args, kwargs = keras_attention_args()
    keras.ops.dot_product_attention(*args, **kwargs)
    assert fused_calls == []
    with pytest.raises(ValueError, match="Flash attention is not supported in tensorflow backend"):
        keras.ops.dot_product_attention(*args, **kwargs, flash_attention=True)


def test_calls_the_op_cannot_serve_run_kerass_function(routed, fused_calls):
    args, kwargs = keras_attention_args()
    int_mask = kwargs["mask"].astype("int32")
    np.testing.assert_array_equal(
        keras.ops.dot_product_attention(*args, mask=int_mask), KERAS_ATTENTION(*args, mask=int_mask)
    )
    with pytest.raises(ValueError, match="only supports 4D inputs"):
        keras.ops.dot_product_attention(QUERY, SOURCE, SOURCE)
    assert fused_calls == []


FRESH_PROCESS = """
import numpy as np, keras, tensorflow as tf
import keras.src.backend.tensorflow.nn as nn
before = nn.dot_product_attention
import tfkit
assert nn.dot_product_attention is before, "import tfkit replaced Keras's dot_product_attention"
try:
    keras.ops.dot_product_attention(*[keras.ops.ones([1, 2, 1, 4])] * 3, flash_attention=True)
except ValueError as err:
    print(err)
served = tf.saved_model.load({exported!r})
query, source = (np.array(x, np.float32) for x in {inputs!r})
np.testing.assert_allclose(served.serve([query, source]).numpy(), np.load({expected!r}), rtol=1e-5, atol=1e-5)
graph = served.serve.get_concrete_function([tf.TensorSpec([None, 5, 12]), tf.TensorSpec([None, 7, 12])]).graph
print(sorted({{n.op for f in graph.as_graph_def().library.function for n in f.node_def if n.op.startswith("Tfkit>")}}))
"""


def test_a_fresh_process_imports_tfkit_keras_unchanged_and_serves_an_exported_model(tmp_path):
    model = attention_model()
    np.save(tmp_path / "expected.npy", model.predict([QUERY, SOURCE], verbose=0))
    model.export(str(tmp_path / "exported"), verbose=False)
    code = FRESH_PROCESS.format(
        exported=str(tmp_path / "exported"),
        inputs=(QUERY.tolist(), SOURCE.tolist()),
        expected=str(tmp_path / "expected.npy"),
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == [
        "Flash attention is not supported in tensorflow backend.",
        "['Tfkit>DotProductAttention']",
    ], result.stdout


def test_the_docs_example_runs(fused_calls):
    """The example in docs/ops.md's attention section, as it is written there."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "ops.md").read_text()
    section = page[page.index("## Attention in Keras") :]
    example = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    namespace = {}
    exec(compile(example, "docs/ops.md", "exec"), namespace)
    assert tuple(namespace["out"].shape) == (2, 128, 8, 64)
    assert namespace["previous"] is False and len(fused_calls) == 1
    assert keras_tf_nn.dot_product_attention is KERAS_ATTENTION


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float64"])
def test_dtype_policies_compute_as_kerass(policy, fused_calls):
    theirs, ours = twins(num_heads=2, key_dim=4, dtype=policy)
    fused_calls.clear()
    expected, got = theirs(QUERY, SOURCE, attention_mask=MASK), ours(QUERY, SOURCE, attention_mask=MASK)
    assert got.dtype == expected.dtype == keras.DTypePolicy(policy).compute_dtype and len(fused_calls) == 1
    tolerance = {"mixed_float16": 2e-3, "mixed_bfloat16": 2e-2, "float64": 1e-12}[policy]
    np.testing.assert_allclose(np.float64(got), np.float64(expected), rtol=tolerance, atol=tolerance)
