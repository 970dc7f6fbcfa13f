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

__all__ = ["COMBINERS", "embedding_bag", "embedding_bag_reference", "shard_rows"]

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
    bags = _combine(summed, combiner, row_splits, w if weighted else None, bag_of_id, num_bags)
    return _assemble(tf.cast(bags, params.dtype), batch_shape, outer, static_batch_shape)


def _combine(summed, combiner: str, row_splits, w, bag_of_id, num_bags) -> tf.Tensor:
    """The bags' weighted sums [bags, dim] divided as the combiner says (in
    summed's dtype; w the flat weights in it, or None for unweighted bags)."""
    if combiner == "sum":
        return summed
    lengths = tf.cast(row_splits[1:] - row_splits[:-1], summed.dtype)
    if combiner == "mean":
        denominator = lengths
    else:
        squares = tf.math.unsorted_segment_sum(w * w, bag_of_id, num_bags) if w is not None else lengths
        # 0 only for an empty or all-zero bag: a NaN weight's NaN stays.
        nonzero = tf.not_equal(squares, 0)
        denominator = tf.sqrt(tf.where(nonzero, squares, tf.ones_like(squares)))
        denominator = tf.where(nonzero, denominator, tf.zeros_like(denominator))
    return summed * tf.math.divide_no_nan(tf.ones_like(denominator), denominator)[:, tf.newaxis]


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


# Sharded tables ------------------------------------------------------------


def shard_rows(vocabulary: int, num_shards: int) -> list[int]:
    """The rows of each of `num_shards` contiguous shards of a table, the
    first ones a row larger where they don't divide evenly (the layout of
    `tf.distribute`'s fixed-shards partitioner)."""
    if not 1 <= num_shards <= vocabulary:
        raise ValueError(f"num_shards must be in [1, {vocabulary}] (the vocabulary size), got {num_shards}")
    rows, extra = divmod(vocabulary, num_shards)
    return [rows + (shard < extra) for shard in range(num_shards)]


def _table_shards(params) -> list | None:
    """The row shards of a sharded table (a ShardedVariable, or a list or
    tuple of shards), or None for one table."""
    shards = _compat.shard_variables(params)
    if shards is None and isinstance(params, (list, tuple)) and params:
        if all(_is_variable(shard) or tf.is_tensor(shard) for shard in params):
            shards = list(params)  # (a nested list of numbers stays one constant table)
    return shards


@embedding_bag.dispatch
def _sharded_embedding_bag(indices, params, weights=None, combiner: str = "sum", *, backend=None):
    """A table in row shards: each shard's share of every bag (its weighted
    sum of the rows it holds) is computed by the op on that shard, where the
    shard lives, and only those [bags, dim] partial sums come back; they are
    added in the accumulation dtype and combined here. The gradient is one
    `tf.IndexedSlices` per shard, with the shard's own row numbers."""
    shards = _table_shards(params)
    if shards is None:
        return NotImplemented
    ends = _shard_ends(shards)
    (ids, row_splits, _, flat_weights, batch_shape, *outer), attrs = _prepare_embedding_bag(
        indices, shards[0], weights, combiner
    )
    weighted = attrs["weighted"]
    acc = _checks.accumulator_dtype(shards[0].dtype)
    num_bags = tf.shape(row_splits, out_type=tf.int64)[0] - 1
    bag_of_id = tf.cast(_segment_ids(row_splits, tf.shape(ids)[0]), tf.int64)
    ids64 = tf.cast(ids, tf.int64)
    with tf.control_dependencies([_check_ids_in_table(ids64, ends[-1], len(shards))]):
        shard_of_id = tf.minimum(tf.searchsorted(tf.constant(ends, tf.int64), ids64, side="right"), len(shards) - 1)
    starts = tf.constant([0, *ends[:-1]], tf.int64)
    local = tf.dynamic_partition(ids64 - tf.gather(starts, shard_of_id), shard_of_id, len(shards))
    bags = tf.dynamic_partition(bag_of_id, shard_of_id, len(shards))
    shard_weights = tf.dynamic_partition(flat_weights, shard_of_id, len(shards)) if weighted else [None] * len(shards)
    partial = []
    for shard, shard_ids, shard_bags, shard_w in zip(shards, local, bags, shard_weights, strict=True):
        counts = tf.math.unsorted_segment_sum(tf.ones_like(shard_bags), shard_bags, num_bags)
        splits = tf.concat([tf.zeros([1], tf.int64), tf.cumsum(counts)], 0)
        bag_ids = tf.RaggedTensor.from_row_splits(tf.cast(shard_ids, ids.dtype), splits, validate=False)
        bag_weights = bag_ids.with_flat_values(shard_w) if weighted else None
        sums = embedding_bag(bag_ids, shard, bag_weights, "sum", backend=backend)
        partial.append(tf.cast(sums, acc))
    w = tf.cast(flat_weights, acc) if weighted else None
    combined = _combine(tf.add_n(partial), combiner, row_splits, w, bag_of_id, num_bags)
    return _assemble(tf.cast(combined, shards[0].dtype), batch_shape, outer, attrs["static_batch_shape"])


def _shard_ends(shards: list) -> list[int]:
    """Each shard's end row in the whole table, checking the shards agree."""
    ends, first = [], shards[0]
    for number, shard in enumerate(shards):
        if not _is_variable(shard):
            shard = tf.convert_to_tensor(shard)
        if shard.shape.rank != 2 or shard.shape[0] is None or shard.shape[1] != first.shape[1]:
            raise _checks.invalid_argument(
                f"params shards must have shape [rows, {first.shape[1]}] with known rows, got shape "
                f"{shape_string(shard)} for shard {number}"
            )
        if shard.dtype != first.dtype:
            raise _checks.invalid_argument(
                f"params shards must share one dtype, got {first.dtype.name} and {shard.dtype.name} (shard {number})"
            )
        ends.append((ends[-1] if ends else 0) + int(shard.shape[0]))
    return ends


def _check_ids_in_table(ids: tf.Tensor, vocab: int, count: int):
    """An InvalidArgumentError, the kernels' message for the whole table, where an id is outside it."""
    outside = tf.logical_or(ids < 0, ids >= vocab)
    # The first id outside, or (a sentinel past the end) len(ids) and 0.
    position = tf.argmax(tf.concat([tf.cast(outside, tf.int32), [1]], 0), output_type=tf.int64)
    value = tf.gather(tf.concat([ids, tf.zeros([1], tf.int64)], 0), position)
    message = tf.strings.format(
        "indices must be in [0, {}) (the vocabulary size, the rows of all {} shards of params), got {} at flat "
        "position {}",
        (vocab, count, value, position),
    )
    inside = tf.logical_not(tf.reduce_any(outside))
    if tf.executing_eagerly():
        if not bool(inside):
            raise _checks.invalid_argument(message.numpy().decode())
        return tf.no_op()
    return tf.debugging.Assert(inside, [message], summarize=1)


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
