"""The embedding family: embedding bags.

`embedding_bag` looks up each id of a bag in a `[vocab, dim]` table and
combines the rows into one, without ever holding `[batch, bag, dim]`: the
sum of `weight * params[id]`, divided by the bag's length ("mean") or by the
square root of the sum of the squared weights ("sqrtn"). It is a
`tfkit.declare.Op` with a compiled C++/CUDA implementation
(`Tfkit>EmbeddingBag` over flat ids and row splits, whose gradient op
`Tfkit>EmbeddingBagGrad` gives one table row per id, so the table's gradient
is a `tf.IndexedSlices`) and a pure-TensorFlow reference (`tf.gather` and
segment sums).
"""

from __future__ import annotations

import tensorflow as tf

from tfkit import _compat, _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = ["COMBINERS", "embedding_bag", "embedding_bag_reference"]

COMBINERS = ("sum", "mean", "sqrtn")
_INDEX_DTYPES = (tf.int32, tf.int64)
# kernels/embedding/embedding_rules.h's message for an empty row_splits.
_EMPTY_SPLITS = "row_splits must not be empty: it has shape [bags + 1], [1] (a single 0) for no bags"


def _prepare_embedding_bag(indices, params, weights=None, combiner: str = "sum"):
    """Combines the embeddings of each bag of ids into one vector.

    For a bag of ids `i_1 .. i_L` with weights `w_1 .. w_L` (all 1 when
    `weights` is None), the result is `sum_k w_k * params[i_k]` ("sum"),
    that sum divided by `L` ("mean"), or divided by `sqrt(sum_k w_k**2)`
    ("sqrtn", as `tf.nn.embedding_lookup_sparse`). An empty bag gives zeros.
    Rows are added in float32 (float64 for float64 tables) in blocks of 1024
    ids whose sums are added in double, and `[batch, bag, dim]` is never
    materialised. The gradient for `params` is a
    `tf.IndexedSlices` holding one row per id, so an optimizer updates only
    the rows used.

    Args:
      indices: int32 or int64 ids in `[0, vocab)`: a tensor `[batch..., bag]`
        of equal-length bags, or a `tf.RaggedTensor` whose innermost ragged
        dimension holds the bags.
      params: The table, `[vocab, dim]`, float16, bfloat16, float32 or
        float64: a tensor, or a `tf.Variable` (then read in place, as
        `tf.gather` reads one: a large table is never copied).
      weights: Optional per-id weights like `indices` (a tensor of its shape,
        or a `tf.RaggedTensor` with its row splits), with the dtype of
        `params`.
      combiner: "sum", "mean" or "sqrtn".

    Returns:
      `[batch..., dim]` with the dtype of `params` for dense `indices`; for
      ragged `indices` `[rows, dim]`, or a `tf.RaggedTensor` with the outer
      ragged dimensions of `indices` when it has more than one.

    Raises:
      InvalidArgumentError: an id outside `[0, vocab)` (naming `indices`,
        the value and the vocabulary size), weights that do not match
        `indices`, a bad combiner, dtype or rank.
    """
    if combiner not in COMBINERS:
        raise _checks.invalid_argument(f"combiner must be one of {', '.join(COMBINERS)}, got {combiner!r}")
    params = _table(params)
    if isinstance(indices, tf.RaggedTensor):
        ids, row_splits, batch_shape, outer, static = _ragged_bags(indices)
        flat_weights = _ragged_weights(weights, indices, params.dtype)
    else:
        indices = tf.convert_to_tensor(indices)
        ids, row_splits, batch_shape, static = _dense_bags(indices)
        outer = []
        flat_weights = _dense_weights(weights, indices, params.dtype)
    _check_index_dtype(ids)
    weighted = flat_weights is not None
    if flat_weights is None:
        flat_weights = tf.zeros([0], params.dtype)
    attrs = {"combiner": combiner, "weighted": weighted, "static_batch_shape": static}
    return (ids, row_splits, params, flat_weights, batch_shape, *outer), attrs


def _table(params) -> tf.Tensor | tf.Variable:
    if not _is_variable(params):
        params = _checks.float_input("params", params)
    elif params.dtype not in _checks.FLOAT_DTYPES:
        raise _checks.invalid_argument(f"params must have a float dtype, got {params.dtype.name}")
    if params.shape.rank is not None and params.shape.rank != 2:
        raise _checks.invalid_argument(f"params must have shape [vocabulary, dim], got shape {shape_string(params)}")
    return params


def _is_variable(params) -> bool:
    return isinstance(params, tf.Variable)


def _variable_handle(params) -> tf.Tensor | None:
    """A resource variable's handle, or None: for a tensor, and for a
    distributed variable outside its replicas (which is then read)."""
    if not _is_variable(params):
        return None
    try:
        return params.handle
    except ValueError:
        return None


def _check_index_dtype(ids: tf.Tensor) -> None:
    if ids.dtype not in _INDEX_DTYPES:
        raise _checks.invalid_argument(f"indices must be int32 or int64, got {ids.dtype.name}")


def _dense_bags(indices: tf.Tensor):
    """Flat ids and the row splits of equal-length bags [batch..., bag]."""
    if indices.shape.rank is None or indices.shape.rank < 1:
        raise _checks.invalid_argument(
            f"indices must have a known rank >= 1 ([batch..., bag]), got shape {shape_string(indices)}"
        )
    shape = tf.shape(indices, out_type=tf.int64)
    batch_shape = shape[:-1]
    bags = tf.reduce_prod(batch_shape)
    row_splits = tf.range(bags + 1, dtype=tf.int64) * shape[-1]
    return tf.reshape(indices, [-1]), row_splits, batch_shape, tuple(indices.shape[:-1])


def _ragged_bags(indices: tf.RaggedTensor):
    """Flat ids, the innermost row splits, and the outer structure."""
    ids = indices.flat_values
    if ids.shape.rank != 1:
        raise _checks.invalid_argument(
            f"ragged indices must have scalar ids, got flat values of shape {shape_string(ids)}"
        )
    splits = indices.nested_row_splits
    if any(s.shape[0] == 0 for s in splits):
        raise _checks.invalid_argument(f"{_EMPTY_SPLITS}, got shape [0]")
    row_splits = tf.cast(splits[-1], tf.int64)
    batch_shape = tf.shape(row_splits, out_type=tf.int64)[:1] - 1
    outer = list(splits[:-1])
    static = (indices.shape[0],) if not outer else None
    return ids, row_splits, batch_shape, outer, static


def _dense_weights(weights, indices: tf.Tensor, dtype: tf.DType) -> tf.Tensor | None:
    if weights is None:
        return None
    if isinstance(weights, tf.RaggedTensor):
        raise _checks.invalid_argument("weights must be a dense tensor like indices, got a tf.RaggedTensor")
    weights = _checks.float_input("weights", weights, dtype, like="params")
    _checks.check_same_shape("weights", weights, "indices", indices)
    if not (weights.shape.is_fully_defined() and indices.shape.is_fully_defined()):
        check = tf.debugging.assert_equal(
            tf.shape(weights), tf.shape(indices), message="weights must have the shape of indices"
        )
        with tf.control_dependencies([check]):
            weights = tf.identity(weights)
    return tf.reshape(weights, [-1])


def _ragged_weights(weights, indices: tf.RaggedTensor, dtype: tf.DType) -> tf.Tensor | None:
    if weights is None:
        return None
    if not isinstance(weights, tf.RaggedTensor) or weights.ragged_rank != indices.ragged_rank:
        raise _checks.invalid_argument("weights must be a tf.RaggedTensor with the row splits of indices")
    values = _checks.float_input("weights", weights.flat_values, dtype, like="params")
    checks = [
        tf.debugging.assert_equal(
            tf.cast(mine, tf.int64), tf.cast(theirs, tf.int64), message="weights must have the row splits of indices"
        )
        for mine, theirs in zip(weights.nested_row_splits, indices.nested_row_splits, strict=True)
        if mine is not theirs
    ]
    with tf.control_dependencies(checks):
        return tf.identity(values)


embedding_bag = Op("tfkit.ops.embedding_bag", prepare=_prepare_embedding_bag)


def _assemble(bags: tf.Tensor, batch_shape: tf.Tensor, outer, static_batch_shape):
    """[bags, dim] back to the shape of the indices' batch."""
    if outer:
        return tf.RaggedTensor.from_nested_row_splits(bags, outer, validate=False)
    dim = tf.shape(bags, out_type=tf.int64)[1:]
    result = tf.reshape(bags, tf.concat([batch_shape, dim], 0))
    if static_batch_shape is not None:
        result.set_shape([*static_batch_shape, bags.shape[1]])
    return result


@embedding_bag.compiled
def _embedding_bag_compiled(
    ids, row_splits, params, weights, batch_shape, *outer, combiner, weighted, static_batch_shape
):
    del weighted  # the op reads it from the weights' length
    library = _loader.load_library()
    handle = _variable_handle(params) if _compat.active("var_mu") else None
    if handle is not None:
        _compat.variable_accessed(params)  # for the tapes, as a read would
        bags = library.tfkit_resource_embedding_bag(ids, row_splits, handle, weights, combiner=combiner)
    else:
        params = tf.convert_to_tensor(params)
        bags = library.tfkit_embedding_bag(ids, row_splits, params, weights, combiner=combiner)
    return _assemble(bags, batch_shape, outer, static_batch_shape)


@embedding_bag.reference
def _embedding_bag_composite(
    ids, row_splits, params, weights, batch_shape, *outer, combiner, weighted, static_batch_shape
):
    acc = _checks.accumulator_dtype(params.dtype)
    with tf.control_dependencies(_runtime_splits_asserts(row_splits)):
        num_bags = tf.shape(row_splits)[0] - 1
    bag_of_id = _segment_ids(row_splits, tf.shape(ids)[0])
    rows = tf.cast(tf.gather(params, ids), acc)
    w = tf.cast(weights, acc) if weighted else tf.ones(tf.shape(ids), acc)
    summed = tf.math.unsorted_segment_sum(rows * w[:, tf.newaxis], bag_of_id, num_bags)
    lengths = tf.cast(row_splits[1:] - row_splits[:-1], acc)
    if combiner == "sum":
        bags = summed
    else:
        if combiner == "mean":
            denominator = lengths
        else:
            squares = tf.math.unsorted_segment_sum(w * w, bag_of_id, num_bags) if weighted else lengths
            # 0 only for an empty or all-zero bag: a NaN weight's NaN stays.
            nonzero = tf.not_equal(squares, 0)
            denominator = tf.sqrt(tf.where(nonzero, squares, tf.ones_like(squares)))
            denominator = tf.where(nonzero, denominator, tf.zeros_like(denominator))
        bags = summed * tf.math.divide_no_nan(tf.ones_like(denominator), denominator)[:, tf.newaxis]
    return _assemble(tf.cast(bags, params.dtype), batch_shape, outer, static_batch_shape)


def _runtime_splits_asserts(row_splits: tf.Tensor) -> list:
    """The kernels' check of an empty row_splits, at run time where its length is unknown."""
    if row_splits.shape[0] is not None:
        return []
    return [tf.debugging.assert_positive(tf.size(row_splits), message=_EMPTY_SPLITS)]


def _segment_ids(row_splits: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """The bag of each flat id (a form XLA compiles: no data-dependent shape)."""
    starts = tf.cast(row_splits[1:-1], tf.int32)
    marks = tf.math.unsorted_segment_sum(tf.ones_like(starts), starts, n + 1)[:n]
    return tf.cumsum(marks)


embedding_bag_reference = embedding_bag.reference_function()


@tf.RegisterGradient("Tfkit>EmbeddingBag")
def _embedding_bag_grad(op, dy):
    ids, row_splits, params, weights = op.inputs
    d_values, d_weights = _loader.load_library().tfkit_embedding_bag_grad(
        ids, row_splits, params, weights, dy, combiner=op.get_attr("combiner")
    )
    d_params = tf.IndexedSlices(d_values, ids, tf.shape(params, out_type=tf.int64))
    return None, None, d_params, d_weights


@tf.RegisterGradient("Tfkit>ResourceEmbeddingBag")
def _resource_embedding_bag_grad(op, dy):
    ids, row_splits, handle, weights = op.inputs
    d_values, d_weights = _loader.load_library().tfkit_resource_embedding_bag_grad(
        ids, row_splits, handle, weights, dy, combiner=op.get_attr("combiner")
    )
    table_shape = tf.raw_ops.VariableShape(input=handle, out_type=tf.int64)
    return None, None, tf.IndexedSlices(d_values, ids, table_shape), d_weights
