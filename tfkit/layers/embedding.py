"""Keras 3 layer for the embedding family: EmbeddingBag."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfkit import backend as tfkit_backend
from tfkit.ops import embedding as embedding_ops


@keras.saving.register_keras_serializable(package="tfkit")
class EmbeddingBag(keras.layers.Layer):
    """A bag of ids to one vector: looks the ids up in a trainable table and
    combines them ("sum", "mean" or "sqrtn"), optionally weighted per id.

    Called as `layer(ids)`, `layer(ids, weights=w)` or `layer([ids, w])`,
    with dense bags `[batch..., bag]` (giving `[batch..., output_dim]`) or a
    `tf.RaggedTensor` of bags (giving `[batch, output_dim]`); an empty bag
    gives zeros. The table's gradient is a `tf.IndexedSlices`, so optimizers
    update only the rows a batch used. The table stays in the variable's
    dtype (no cast of the whole table under a mixed precision policy); the
    result is cast to the compute dtype. See `tfkit.ops.embedding_bag`.

    Args:
      input_dim: The vocabulary size; ids are in `[0, input_dim)`.
      output_dim: The embedding size.
      combiner: "sum", "mean" or "sqrtn".
      embeddings_initializer, embeddings_regularizer, embeddings_constraint:
        For the `[input_dim, output_dim]` table, as in `keras.layers.Embedding`.
      num_shards: None for one `[input_dim, output_dim]` weight
        (`embeddings`); k for k row-shard weights `embeddings_0` ..
        `embeddings_{k-1}` (contiguous rows, the first shards a row larger
        where k does not divide input_dim; `tfkit.ops.embedding.shard_rows`).
        Under a `ParameterServerStrategy` scope each shard is placed on a
        parameter server, round robin, and each bag's share of a shard is
        computed there (see `tfkit.ops.embedding_bag`). `embeddings` is then
        the list of shards.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        combiner: str = "sum",
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        num_shards: int | None = None,
        backend: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(input_dim) <= 0 or int(output_dim) <= 0:
            raise ValueError(f"input_dim and output_dim must be > 0, got {input_dim} and {output_dim}")
        if combiner not in embedding_ops.COMBINERS:
            raise ValueError(f"combiner must be one of {', '.join(embedding_ops.COMBINERS)}, got {combiner!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.combiner = combiner
        self.num_shards = None if num_shards is None else int(num_shards)
        if self.num_shards is not None:
            embedding_ops.shard_rows(self.input_dim, self.num_shards)  # checks the count
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = keras.constraints.get(embeddings_constraint)
        self.backend = backend
        self.autocast = False
        self.supports_jit = tfkit_backend.supports_xla(backend)

    def build(self, input_shape=None):
        if self.num_shards is None:
            self.embeddings = self._table_weight("embeddings", self.input_dim)
        else:
            rows = embedding_ops.shard_rows(self.input_dim, self.num_shards)
            shards = [self._table_weight(f"embeddings_{i}", count) for i, count in enumerate(rows)]
            for i, shard in enumerate(shards):
                setattr(self, f"embeddings_{i}", shard)  # checkpoints track attributes, not a list's items
            self.embeddings = shards

    def _table_weight(self, name: str, rows: int):
        return self.add_weight(
            name=name,
            shape=(rows, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
            trainable=True,
        )

    def call(self, inputs, weights=None):
        ids = inputs
        if isinstance(inputs, (list, tuple)):
            ids, weights = inputs
        if self.num_shards is None:
            table = self.embeddings.value  # the tf.Variable, read in place by the op
        else:
            table = [shard.value for shard in self.embeddings]
        if weights is not None:
            weights = _cast(weights, self.variable_dtype)
        bags = embedding_ops.embedding_bag(ids, table, weights, self.combiner, backend=self.backend)
        return _cast(bags, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "combiner": self.combiner,
            "num_shards": self.num_shards,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
            "embeddings_constraint": keras.constraints.serialize(self.embeddings_constraint),
            "backend": self.backend,
        }


def _cast(value, dtype):
    if isinstance(value, tf.RaggedTensor):
        return value.with_flat_values(tf.cast(value.flat_values, dtype))
    return tf.cast(value, dtype)
