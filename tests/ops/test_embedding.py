"""The embedding family: embedding_bag against NumPy float64 and its
reference, dense and ragged bags, empty bags, weights, the sparse params
gradient, opcheck, bad ids and bad inputs."""

import itertools
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import assert_close, kernel_and_shape_function_errors, to_numpy64
from tfkit import _loader
from tfkit.ops import embedding
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
COMBINERS = ["sum", "mean", "sqrtn"]
BACKENDS = ["compiled", "reference"]
VOCAB, DIM = 11, 6


def numpy_embedding_bag(bags, params, weights=None, combiner="sum"):
    """bags: a list of id lists; weights: a matching list or None; float64."""
    params = np.asarray(params, np.float64)
    out = np.zeros((len(bags), params.shape[1]))
    for b, ids in enumerate(bags):
        w = np.ones(len(ids)) if weights is None else np.asarray(weights[b], np.float64)
        total = (w[:, None] * params[np.asarray(ids, np.int64)]).sum(0) if len(ids) else 0.0
        norm = {"sum": 1.0, "mean": len(ids), "sqrtn": np.sqrt((w * w).sum())}[combiner]
        out[b] = total / norm if norm else 0.0
    return out


def make_params(dtype, vocab=VOCAB, dim=DIM, seed=0):
    return tf.cast(np.random.default_rng(seed).normal(size=(vocab, dim)), dtype)


def make_ids(shape, dtype=tf.int32, vocab=VOCAB, seed=1):
    return tf.constant(np.random.default_rng(seed).integers(0, vocab, size=shape), dtype)


def make_weights(shape, dtype, seed=2):
    return tf.cast(np.random.default_rng(seed).uniform(0.5, 2.0, size=shape), dtype)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_dense_bags_match_numpy_float64(dtype, combiner, weighted):
    params, ids = make_params(dtype), make_ids([5, 4], tf.int64)
    weights = make_weights([5, 4], dtype) if weighted else None
    np_weights = None if weights is None else to_numpy64(weights)
    want = numpy_embedding_bag(ids.numpy(), to_numpy64(params), np_weights, combiner)
    for backend in BACKENDS:
        got = embedding.embedding_bag(ids, params, weights, combiner=combiner, backend=backend)
        assert got.dtype == dtype and got.shape == (5, DIM)
        assert_close(got, want, dtype)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("combiner", COMBINERS)
def test_ragged_bags_with_empty_bags(combiner, weighted):
    bags = [[1, 2, 2], [], [10], [0, 3, 5, 7, 9], []]
    ids = tf.ragged.constant(bags, tf.int32)
    params = make_params(tf.float64)
    weights = tf.ragged.constant([[0.5, 2.0, -1.0], [], [3.0], [1.0, 2.0, 3.0, 4.0, 5.0], []], tf.float64)
    np_weights = weights.to_list() if weighted else None
    want = numpy_embedding_bag(bags, params.numpy(), np_weights, combiner)
    assert not want[1].any() and not want[4].any()
    for backend in BACKENDS:
        got = embedding.embedding_bag(ids, params, weights if weighted else None, combiner, backend=backend)
        assert got.shape == (5, DIM)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_ragged_rank_two_keeps_the_outer_rows():
    ids = tf.ragged.constant([[[1, 2], [3]], [], [[4, 5, 6], [], [7]]], tf.int64)
    params = make_params(tf.float32)
    for backend in BACKENDS:
        got = embedding.embedding_bag(ids, params, combiner="mean", backend=backend)
        assert isinstance(got, tf.RaggedTensor)
        assert got.row_lengths().numpy().tolist() == [2, 0, 3]
        want = numpy_embedding_bag([[1, 2], [3], [4, 5, 6], [], [7]], params.numpy(), combiner="mean")
        np.testing.assert_allclose(got.flat_values.numpy(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 4), (4,), (0, 3), (3, 0)], ids=str)
def test_batch_dimensions_and_empty_shapes(shape):
    ids, params = make_ids(shape), make_params(tf.float32)
    bags = ids.numpy().reshape(int(np.prod(shape[:-1])), shape[-1])
    want = numpy_embedding_bag(bags, params.numpy()).reshape((*shape[:-1], DIM))
    for backend in BACKENDS:
        got = embedding.embedding_bag(ids, params, backend=backend)
        assert got.shape == (*shape[:-1], DIM)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_a_long_bag_keeps_its_accuracy():
    """65536 ids of one float32 row of 0.1: a plain float32 running sum is off
    by 6e-4; the kernel's blocks of 1024 ids, added in double, by 1e-5."""
    params = tf.constant([[0.1], [0.2]], tf.float32)
    got = embedding.embedding_bag(tf.zeros([1, 1 << 16], tf.int32), params, backend="compiled")
    exact = float(np.float32(0.1)) * (1 << 16)
    assert abs(float(got[0, 0]) - exact) / exact < 3e-5


@pytest.mark.parametrize("combiner", COMBINERS)
def test_opcheck(combiner):
    """Static shapes, eager vs graph (unknown dims), compiled vs reference,
    numeric vs analytic gradients for params and weights, XLA, threads."""
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    params, ids = make_params(tf.float64), make_ids([4, 3])
    args = [ids, params, make_weights([4, 3], tf.float64)]
    report = opcheck(embedding.embedding_bag, args, {"combiner": combiner}, checks=checks)
    assert all(r.status == "passed" for r in report.results.values()), report


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16], ids=lambda d: d.name)
def test_opcheck_low_precision_unweighted(dtype):
    checks = ["eager_vs_graph", "reference", "xla"]
    tolerance = {tf.float16: 4e-2, tf.bfloat16: 2.4e-1}.get(dtype)
    args = [make_ids([3, 5]), make_params(dtype)]
    report = opcheck(embedding.embedding_bag, args, {"combiner": "mean"}, checks=checks, atol=tolerance, rtol=tolerance)
    assert all(r.status == "passed" for r in report.results.values()), report


def gradients(ids, params, weights, combiner, backend):
    with tf.GradientTape() as tape:
        tape.watch([params, weights.flat_values if isinstance(weights, tf.RaggedTensor) else weights])
        y = embedding.embedding_bag(ids, params, weights, combiner, backend=backend)
        y = y.flat_values if isinstance(y, tf.RaggedTensor) else y
        loss = tf.reduce_sum(y * tf.cast(np.arange(y.shape[-1]) - 2.5, y.dtype))
    w = weights.flat_values if isinstance(weights, tf.RaggedTensor) else weights
    return tape.gradient(loss, [params, w])


@pytest.mark.parametrize("combiner", COMBINERS)
def test_ragged_gradients_match_the_reference_and_numbers(combiner):
    params = make_params(tf.float64)
    ids = tf.ragged.constant([[1, 2, 2], [], [10], [0, 3, 5]], tf.int64)
    weights = tf.ragged.constant([[0.5, 2.0, -1.0], [], [3.0], [1.0, 2.0, 3.0]], tf.float64)
    d_params, d_weights = gradients(ids, params, weights, combiner, "compiled")
    assert isinstance(d_params, tf.IndexedSlices)
    assert d_params.indices.numpy().tolist() == ids.flat_values.numpy().tolist()
    assert d_params.values.shape == (7, DIM)
    want_params, want_weights = gradients(ids, params, weights, combiner, "reference")
    np.testing.assert_allclose(
        tf.convert_to_tensor(d_params).numpy(), tf.convert_to_tensor(want_params).numpy(), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(d_weights.numpy(), want_weights.numpy(), rtol=1e-12, atol=1e-12)

    def loss_of_weights(values):
        bags = tf.RaggedTensor.from_row_splits(values, weights.row_splits)
        y = embedding.embedding_bag(ids, params, bags, combiner, backend="compiled")
        return tf.reduce_sum(y * tf.cast(np.arange(DIM) - 2.5, tf.float64))

    theoretical, numerical = tf.test.compute_gradient(loss_of_weights, [weights.flat_values])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("combiner", COMBINERS)
def test_gradients_in_half_precision_match_the_reference(combiner):
    params, ids, weights = make_params(tf.float16), make_ids([4, 3]), make_weights([4, 3], tf.float16)
    got = gradients(ids, params, weights, combiner, "compiled")
    want = gradients(ids, params, weights, combiner, "reference")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(
            to_numpy64(tf.convert_to_tensor(g)), to_numpy64(tf.convert_to_tensor(w)), rtol=2e-2, atol=2e-2
        )


def test_unknown_dims_and_ragged_under_tf_function():
    params = make_params(tf.float32)
    dense = tf.function(
        lambda i, p: embedding.embedding_bag(i, p, combiner="sqrtn", backend="compiled"),
        input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, DIM])],
    )
    ids = make_ids([3, 4])
    assert dense.get_concrete_function().structured_outputs.shape.as_list() == [None, DIM]
    want = embedding.embedding_bag(ids, params, combiner="sqrtn", backend="reference")
    np.testing.assert_allclose(dense(ids, params).numpy(), want.numpy(), rtol=1e-6)
    ragged = tf.function(
        lambda i: embedding.embedding_bag(i, params, combiner="mean", backend="compiled"),
        input_signature=[tf.RaggedTensorSpec([None, None], tf.int64)],
    )
    ids = tf.ragged.constant([[1, 2], [], [3, 4, 5]], tf.int64)
    want = embedding.embedding_bag(ids, params, combiner="mean", backend="reference")
    np.testing.assert_allclose(ragged(ids).numpy(), want.numpy(), rtol=1e-6)


def test_xla_runs_the_reference_for_ragged_bags():
    params = make_params(tf.float32)
    ids = tf.ragged.constant([[1, 2], [], [3, 4, 5]], tf.int64)
    jitted = tf.function(lambda i: embedding.embedding_bag(i, params, combiner="sqrtn"), jit_compile=True)
    want = embedding.embedding_bag(ids, params, combiner="sqrtn", backend="compiled")
    np.testing.assert_allclose(jitted(ids).numpy(), want.numpy(), rtol=1e-6)


BAD_IDS = [(-1, 7), (VOCAB, 2), (2**31 - 1, 0)]


@pytest.mark.parametrize("index_dtype", [tf.int32, tf.int64], ids=lambda d: d.name)
@pytest.mark.parametrize("bad,position", BAD_IDS)
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_bad_ids_name_indices_the_value_and_the_vocabulary(bad, position, mode, index_dtype):
    ids = np.full([3, 3], 1)
    ids.flat[position] = bad
    call = lambda i: embedding.embedding_bag(i, make_params(tf.float32), backend="compiled")  # noqa: E731
    says = rf"indices .*\[0, {VOCAB}\).* got {bad} at flat position {position}"
    with pytest.raises(tf.errors.InvalidArgumentError, match=says):
        (tf.function(call) if mode == "graph" else call)(tf.constant(ids, index_dtype))


def test_bad_ids_in_the_gradient_op_and_bad_row_splits():
    library = _loader.load_library()
    params, dy = make_params(tf.float32), tf.ones([2, DIM])
    empty = tf.zeros([0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices .* got 11"):
        library.tfkit_embedding_bag_grad([1, 11, 2], tf.constant([0, 1, 3], tf.int64), params, empty, dy)
    for splits in ([0, 2, 1], [1, 2, 3], [0, 1, 4], [0, 1, 2]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="row_splits must start at 0"):
            library.tfkit_embedding_bag([1, 2, 3], tf.constant(splits, tf.int64), params, empty)
    with pytest.raises(tf.errors.InvalidArgumentError, match="weights must have the shape of indices"):
        library.tfkit_embedding_bag([1, 2, 3], tf.constant([0, 3], tf.int64), params, tf.ones([2]))


@pytest.mark.parametrize(
    "args,kwargs,says",
    [
        (([[1, 2]], tf.ones([5, 3])), {"combiner": "max"}, "combiner must be one of"),
        (([[1, 2]], tf.ones([5, 3]), tf.ones([1, 3])), {}, "weights must have the shape of indices"),
        (([[1, 2]], tf.ones([5, 3]), tf.ones([1, 2], tf.float64)), {}, "weights must have dtype float32"),
        (([[1.0, 2.0]], tf.ones([5, 3])), {}, "indices must be int32 or int64"),
        (([[1, 2]], tf.ones([5, 3, 1])), {}, r"params must have shape \[vocabulary, dim\]"),
        (([[1, 2]], tf.ones([5, 3], tf.int32)), {}, "params must have a float dtype"),
        (
            (tf.ragged.constant([[1], [2, 3]]), tf.ones([5, 3]), tf.ragged.constant([[1.0, 2.0], [3.0]])),
            {},
            "weights must have the row splits of indices",
        ),
    ],
)
def test_bad_inputs_name_the_argument(args, kwargs, says):
    for backend in BACKENDS:
        with pytest.raises(tf.errors.InvalidArgumentError, match=says):
            embedding.embedding_bag(*args, **kwargs, backend=backend)


def test_weights_shape_mismatch_with_unknown_dims_in_a_graph():
    call = tf.function(
        lambda i, w: embedding.embedding_bag(i, make_params(tf.float32), w, backend="compiled"),
        input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None])],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="weights must have the shape of indices"):
        call(tf.ones([2, 3], tf.int32), tf.ones([3, 2]))


def test_opcheck_saved_model_and_bad_inputs():
    """SavedModel loaded in a fresh process; bad ids, weights and combiners
    raise InvalidArgumentError eagerly and in a graph there, never crash."""
    params, ids = make_params(tf.float32), make_ids([4, 3])
    weights = make_weights([4, 3], tf.float32)
    bad = [
        ([np.array([[1, -1, 2]], np.int32), params], {}),
        ([np.array([[1, VOCAB]], np.int64), params], {"combiner": "mean"}),
        ([np.array([[1, 2**40]], np.int64), params, np.ones([1, 2], np.float32)], {"combiner": "sqrtn"}),
        ([ids, params, np.ones([4, 2], np.float32)], {}),
        ([ids, params], {"combiner": "max"}),
    ]
    checks = ["saved_model", "bad_inputs"]
    args, kwargs = [ids, params, weights], {"combiner": "sqrtn"}
    report = opcheck(embedding.embedding_bag, args, kwargs, checks=checks, bad_inputs=bad)
    assert all(r.status == "passed" for r in report.results.values()), report


@pytest.mark.parametrize("combiner", COMBINERS)
def test_a_variable_table_is_read_in_place_with_the_same_results(combiner):
    """A tf.Variable goes to the resource op (no copy of the table), with the
    results and gradients of the tensor op, under a tape and in tf.function."""
    table = tf.Variable(make_params(tf.float64))
    ids, weights = make_ids([4, 3]), make_weights([4, 3], tf.float64)

    @tf.function
    def run(table_like):
        with tf.GradientTape() as tape:
            tape.watch(weights)
            y = embedding.embedding_bag(ids, table_like, weights, combiner, backend="compiled")
            loss = tf.reduce_sum(y * tf.cast(np.arange(DIM) - 2.5, y.dtype))
        return y, *tape.gradient(loss, [table_like, weights])

    y, d_table, d_weights = run(table)
    assert isinstance(d_table, tf.IndexedSlices) and d_table.dense_shape.numpy().tolist() == [VOCAB, DIM]
    ops = {op.type for op in run.get_concrete_function(table).graph.get_operations()}
    assert "Tfkit>ResourceEmbeddingBag" in ops and "ReadVariableOp" not in ops
    with tf.GradientTape() as tape:
        tensor = tf.convert_to_tensor(table)
        tape.watch([tensor, weights])
        want = embedding.embedding_bag(ids, tensor, weights, combiner, backend="compiled")
        loss = tf.reduce_sum(want * tf.cast(np.arange(DIM) - 2.5, want.dtype))
    want_table, want_weights = tape.gradient(loss, [tensor, weights])
    np.testing.assert_array_equal(y.numpy(), want.numpy())
    np.testing.assert_array_equal(tf.convert_to_tensor(d_table).numpy(), tf.convert_to_tensor(want_table).numpy())
    np.testing.assert_array_equal(d_weights.numpy(), want_weights.numpy())


def test_a_variable_table_checks_ids_and_dtype():
    table = tf.Variable(make_params(tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"indices .*\[0, {VOCAB}\).* got {VOCAB}"):
        embedding.embedding_bag([[1, VOCAB]], table, backend="compiled")
    with pytest.raises(tf.errors.InvalidArgumentError, match="params must have a float dtype"):
        embedding.embedding_bag([[1]], tf.Variable(tf.ones([3, 2], tf.int32)), backend="compiled")
    library = _loader.load_library()
    with pytest.raises(tf.errors.InvalidArgumentError, match="params must have dtype double"):
        splits, no_weights = tf.constant([0, 1], tf.int64), tf.zeros([0], tf.float64)
        library.tfkit_resource_embedding_bag([1], splits, table.handle, no_weights)


EMPTY_SPLITS = "row_splits must not be empty: it has shape [bags + 1], [1] (a single 0) for no bags, got shape [0]"
NO_WEIGHTS = [0]
# Each raw op with bad static shapes (ids, row_splits, params, weights, dy):
# the message its OpKernel gives, which its shape function must give too.
STATIC_SHAPE_ERRORS = [
    (EMPTY_SPLITS, [0], [0], [3, 2], NO_WEIGHTS, [0, 2]),
    ("row_splits must have shape [bags + 1], got shape [2,1]", [1], [2, 1], [3, 2], NO_WEIGHTS, [1, 2]),
    ("indices must be flat ids [n], got shape [1,1]", [1, 1], [2], [3, 2], NO_WEIGHTS, [1, 2]),
    ("params must have shape [vocabulary, dim], got shape [3,2,1]", [1], [2], [3, 2, 1], NO_WEIGHTS, [1, 2]),
    ("weights must have the shape of indices [2] (or [0] for none), got shape [3]", [2], [2], [3, 2], [3], [1, 2]),
]


def raw_bag_call(op, ids, splits, params, weights, dy):
    """The raw op `op` with zeros of the given shapes (and dy for a grad op)."""
    library = _loader.load_library()
    args = [tf.zeros(ids, tf.int32), tf.zeros(splits, tf.int64), tf.zeros(params), tf.zeros(weights)]
    if op.endswith("grad"):
        args.append(tf.zeros(dy))
    return getattr(library, op)(*args)


@pytest.mark.parametrize("op", ["tfkit_embedding_bag", "tfkit_embedding_bag_grad"])
@pytest.mark.parametrize(
    "says,ids,splits,params,weights,dy", STATIC_SHAPE_ERRORS, ids=[c[0] for c in STATIC_SHAPE_ERRORS]
)
def test_shape_functions_name_the_argument_as_the_kernels_do(op, says, ids, splits, params, weights, dy):
    kernel, shape_function = kernel_and_shape_function_errors(
        lambda: raw_bag_call(op, ids, splits, params, weights, dy)
    )
    assert kernel == shape_function == says


def test_the_grad_ops_shape_function_checks_dy_as_the_kernel_does():
    library = _loader.load_library()
    call = lambda: library.tfkit_embedding_bag_grad(  # noqa: E731
        tf.zeros([1], tf.int32), tf.constant([0, 1], tf.int64), tf.zeros([3, 2]), tf.zeros([0]), tf.zeros([1, 3])
    )
    kernel, shape_function = kernel_and_shape_function_errors(call)
    assert kernel == shape_function == "dy must have shape [1,2], got shape [1,3]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_row_splits_says_so(backend):
    """A ragged indices whose row splits are empty (not a valid RaggedTensor,
    made without validation): statically, and at run time in a graph."""
    empty = lambda ids, splits: tf.RaggedTensor.from_row_splits(ids, splits, validate=False)  # noqa: E731
    ids, splits = tf.zeros([0], tf.int32), tf.zeros([0], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(EMPTY_SPLITS)):
        embedding.embedding_bag(empty(ids, splits), make_params(tf.float32), backend=backend)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64)])
    def unknown_length(ids, splits):
        return embedding.embedding_bag(empty(ids, splits), make_params(tf.float32), backend=backend)

    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(EMPTY_SPLITS.split(", got")[0])):
        unknown_length(ids, splits)
    assert unknown_length(tf.constant([1]), tf.constant([0, 1], tf.int64)).shape == (1, DIM)


def resource_bag(handle, grad=False):
    """The resource op (or its grad op) on `handle` with one bag of id 0."""
    library = _loader.load_library()
    args = [tf.constant([0]), tf.constant([0, 1], tf.int64), handle, tf.zeros([0])]
    if grad:
        return library.tfkit_resource_embedding_bag_grad(*args, tf.zeros([1, DIM]))
    return library.tfkit_resource_embedding_bag(*args)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_the_resource_ops_name_params_for_a_missing_or_wrong_variable(grad, mode):
    """The handle of no variable (made, never assigned) and of a lookup table:
    InvalidArgumentError naming params."""
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer([1], [2]), -1)
    handles = [
        lambda: tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[VOCAB, DIM], shared_name="tfkit_never_assigned"),
        lambda: table.resource_handle,
    ]
    for handle in handles:
        call = lambda handle=handle: resource_bag(handle(), grad)  # noqa: E731
        says = "params must be the handle of an initialized resource variable: "
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(says)):
            (tf.function(call) if mode == "graph" else call)()


@pytest.mark.parametrize("grad", [False, True])
def test_the_resource_ops_refuse_a_tensor_of_no_handle(grad):
    """An empty tensor of handles, of a rank known only at run time (eagerly,
    TensorFlow refuses it before the op): never read out of bounds."""
    variable = tf.Variable(make_params(tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def first_handles(n):
        handles = tf.reshape(tf.stack([variable.handle])[:n], tf.fill([n + 1], n))  # [0] for n = 0
        return resource_bag(handles, grad)

    says = "params must have shape [] (the handle of a resource variable), got shape [0]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(says)):
        first_handles(tf.constant(0))


def test_the_resource_ops_shape_function_checks_the_handle():
    handle = lambda: tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[VOCAB, DIM], shared_name="tfkit_two")  # noqa: E731
    kernel, shape_function = kernel_and_shape_function_errors(lambda: resource_bag(tf.stack([handle(), handle()])))
    assert kernel == shape_function == "params must have shape [] (the handle of a resource variable), got shape [2]"


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_bags_whose_rows_would_pass_int64_elements(mode):
    """A table [0, 2**62] (no elements) and four empty bags: y [4, 2**62]
    cannot be counted in int64; the ops refuse it instead of crashing (in a
    graph of unknown shapes: the kernel's checks)."""
    library = _loader.load_library()
    ids, splits, weights = tf.zeros([0], tf.int32), tf.zeros([5], tf.int64), tf.zeros([0])
    params = tf.zeros([0, 2**62])
    variable = tf.Variable(params)
    calls = {
        "y": lambda params, dy: library.tfkit_embedding_bag(ids, splits, params, weights),
        "dy": lambda params, dy: library.tfkit_embedding_bag_grad(ids, splits, params, weights, dy),
        "y of the variable": lambda params, dy: library.tfkit_resource_embedding_bag(
            ids, splits, variable.handle, weights
        ),
    }
    for name, call in calls.items():
        says = f"{name.split()[0]} ([bags, dim]: the bags of row_splits, the dim of params) must have at most"
        run = tf.function(call, input_signature=[tf.TensorSpec(None)] * 2) if mode == "graph" else call
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(says)):
            run(params, tf.zeros([4, 0]))


GPUS = tf.config.list_physical_devices("GPU")
OPS = ["Tfkit>EmbeddingBag", "Tfkit>EmbeddingBagGrad", "Tfkit>ResourceEmbeddingBag", "Tfkit>ResourceEmbeddingBagGrad"]


@pytest.mark.parametrize("op_name", OPS)
def test_kernel_registrations_follow_the_build(op_name):
    from tensorflow.python.framework import kernels as registered

    _loader.load_library()
    devices = {k.device_type for k in registered.get_registered_kernels_for_op(op_name).kernel}
    assert "CPU" in devices
    assert ("GPU" in devices) == (_loader.build_info()["cuda"] == "1")


@pytest.mark.skipif(not GPUS, reason="no GPU visible to TensorFlow")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_gpu_matches_cpu_and_refuses_bad_ids(dtype):
    params, weights = make_params(dtype, vocab=1000, dim=64), make_weights([64, 32], dtype)
    ids = tf.constant(np.random.default_rng(3).integers(0, 1000, size=(64, 32)))
    results = {}
    for device in ("/CPU:0", "/GPU:0"):
        with tf.device(device):
            for combiner in COMBINERS:
                with tf.GradientTape() as tape:
                    tape.watch([params, weights])
                    y = embedding.embedding_bag(ids, params, weights, combiner, backend="compiled")
                    loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(np.arange(64) % 7 - 3, tf.float32))
                grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, [params, weights])]
                results.setdefault(device, []).extend([y, *grads])
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices .*\[0, 1000\).* got 1000"):
                embedding.embedding_bag(tf.constant([[1, 1000]]), params, backend="compiled")
    tol = {tf.float64: 1e-9, tf.float32: 1e-4, tf.float16: 3e-2, tf.bfloat16: 2e-1}[dtype]
    for cpu, gpu in zip(results["/CPU:0"], results["/GPU:0"], strict=True):
        np.testing.assert_allclose(to_numpy64(gpu), to_numpy64(cpu), rtol=tol, atol=tol * 10)


# Sharded tables: a ShardedVariable or a list of row shards ----------------


def shard_table(table, counts, kind):
    """The table in row shards of these row counts: variables, a ShardedVariable, or tensors."""
    starts = np.cumsum([0, *counts])
    shards = [table[a:b] for a, b in itertools.pairwise(starts)]
    if kind == "tensors":
        return shards
    variables = [tf.Variable(shard) for shard in shards]
    return tf.__internal__.distribute.ShardedVariable(variables) if kind == "sharded_variable" else variables


def shard_list(params) -> list:
    return list(params.variables) if hasattr(params, "variables") else list(params)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bags", ["dense", "ragged"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("combiner", COMBINERS)
def test_a_sharded_table_gives_the_unsharded_bags_and_gradients(combiner, weighted, bags, backend):
    table = make_params(tf.float32)
    sharded = shard_table(table, embedding.shard_rows(VOCAB, 3), "sharded_variable")
    whole = tf.Variable(table)
    if bags == "dense":
        ids, weights = make_ids([5, 4]), make_weights([5, 4], tf.float32) if weighted else None
    else:
        ids = tf.ragged.constant([[1, 10, 4], [], [7], [0, 0, 9, 3, 5]])
        weights = tf.ragged.constant([[0.5, 2.0, 1.0], [], [3.0], [1.0, 1.5, 0.5, 2.0, 1.0]]) if weighted else None
    with tf.GradientTape(persistent=True) as tape:
        got = embedding.embedding_bag(ids, sharded, weights, combiner, backend=backend)
        want = embedding.embedding_bag(ids, whole, weights, combiner, backend=backend)
        scale = tf.constant(np.arange(DIM) - 2.5, tf.float32)
        got_loss, want_loss = tf.reduce_sum(got * scale), tf.reduce_sum(want * scale)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    shard_grads = tape.gradient(got_loss, shard_list(sharded))
    whole_grad = tf.convert_to_tensor(tape.gradient(want_loss, whole))
    assert all(isinstance(g, tf.IndexedSlices) for g in shard_grads)
    for grad, shard in zip(shard_grads, shard_list(sharded), strict=True):
        # rows local to the shard, the shard's own shape
        assert grad.indices.numpy().min(initial=0) >= 0 and grad.indices.numpy().max(initial=0) < shard.shape[0]
        assert tuple(grad.dense_shape.numpy()) == tuple(shard.shape)
    dense = np.concatenate([tf.convert_to_tensor(g).numpy() for g in shard_grads])
    np.testing.assert_allclose(dense, whole_grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["variables", "tensors"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_lists_of_shards_in_every_dtype_match_numpy(kind, dtype):
    table = make_params(dtype)
    shards = shard_table(table, [5, 1, 5], kind)  # any row counts, not only the even layout
    ids = make_ids([4, 3])
    got = embedding.embedding_bag(ids, shards, None, "mean")
    want = numpy_embedding_bag(ids.numpy().tolist(), to_numpy64(table), None, "mean")
    assert got.dtype == dtype
    assert_close(got, want, dtype, scale=2)


def test_shard_rows_is_the_even_layout_first_shards_larger():
    assert embedding.shard_rows(11, 3) == [4, 4, 3]
    assert embedding.shard_rows(6, 3) == [2, 2, 2]
    with pytest.raises(ValueError, match=r"num_shards must be in \[1, 2\]"):
        embedding.shard_rows(2, 3)


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("bad,position", [(-1, 4), (VOCAB, 2)])
def test_an_id_outside_the_whole_sharded_table_names_indices_the_value_and_the_vocabulary(bad, position, mode):
    shards = shard_table(make_params(tf.float32), embedding.shard_rows(VOCAB, 2), "variables")
    ids = np.full([2, 3], 1)
    ids.flat[position] = bad
    call = lambda i: embedding.embedding_bag(i, shards)  # noqa: E731
    if mode == "graph":
        call = tf.function(call, input_signature=[tf.TensorSpec([None, None], tf.int64)])
    says = rf"indices must be in \[0, {VOCAB}\) .*all 2 shards.* got {bad} at flat position {position}"
    with pytest.raises(tf.errors.InvalidArgumentError, match=says):
        call(tf.constant(ids, tf.int64))


def test_sharded_bags_under_tf_function_with_unknown_dims():
    table = make_params(tf.float32)
    shards = shard_table(table, embedding.shard_rows(VOCAB, 3), "variables")
    lookup = tf.function(
        lambda i, w: embedding.embedding_bag(i, shards, w, "sqrtn"),
        input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.float32)],
    )
    ids, weights = make_ids([3, 5]), make_weights([3, 5], tf.float32)
    np.testing.assert_allclose(
        lookup(ids, weights).numpy(),
        embedding.embedding_bag(ids, table, weights, "sqrtn").numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
    assert lookup(tf.zeros([0, 5], tf.int32), tf.zeros([0, 5])).shape == (0, DIM)


@pytest.mark.parametrize(
    "shards, says",
    [
        (
            [tf.Variable(tf.ones([3, 4])), tf.Variable(tf.ones([2, 5]))],
            r"shape \[rows, 4\].*got shape \[2,5\] for shard 1",
        ),
        ([tf.Variable(tf.ones([3, 4])), tf.Variable(tf.ones([2, 4], tf.float64))], "share one dtype"),
    ],
)
def test_shards_that_disagree_are_refused(shards, says):
    with pytest.raises(tf.errors.InvalidArgumentError, match=says):
        embedding.embedding_bag(tf.constant([[0, 1]]), shards)


def test_a_nested_list_of_numbers_is_still_one_table():
    got = embedding.embedding_bag(tf.constant([[0, 1]]), [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(got.numpy(), [[4.0, 6.0]])
