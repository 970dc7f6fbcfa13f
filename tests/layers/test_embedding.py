"""Keras 3 layer of the embedding family: EmbeddingBag with dense and ragged
bags and weights, sparse training with Keras optimizers, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_python
from tfkit.layers import EmbeddingBag
from tfkit.ops import embedding

VOCAB, DIM = 40, 8


def built_layer(**kwargs) -> EmbeddingBag:
    keras.utils.set_random_seed(0)
    layer = EmbeddingBag(VOCAB, DIM, **kwargs)
    layer.build()
    return layer


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_dense_and_ragged_bags_with_weights_every_way(combiner):
    layer = built_layer(combiner=combiner)
    table = layer.embeddings.numpy()
    ids = tf.constant([[1, 2, 3], [4, 4, 39]])
    weights = tf.constant([[1.0, 0.5, 2.0], [1.0, -1.0, 3.0]])
    want = embedding.embedding_bag(ids, table, weights, combiner, backend="reference").numpy()
    np.testing.assert_allclose(layer(ids, weights=weights).numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer([ids, weights]).numpy(), want, rtol=1e-6, atol=1e-6)
    ragged_ids = tf.RaggedTensor.from_tensor(ids)
    ragged = layer(ragged_ids, weights=tf.RaggedTensor.from_tensor(weights))
    np.testing.assert_allclose(ragged.numpy(), want, rtol=1e-6, atol=1e-6)
    unweighted = embedding.embedding_bag(ids, table, combiner=combiner, backend="reference").numpy()
    np.testing.assert_allclose(layer(ids).numpy(), unweighted, rtol=1e-6, atol=1e-6)
    with_empty = layer(tf.ragged.constant([[1, 2], [], [3]]))
    assert with_empty.shape == (3, DIM) and not with_empty.numpy()[1].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="combiner must be one of"):
        EmbeddingBag(4, 2, combiner="max")
    with pytest.raises(ValueError, match="input_dim and output_dim must be > 0"):
        EmbeddingBag(0, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices must be in \[0, 40\)"):
        built_layer(backend="compiled")(tf.constant([[1, 40]]))


def test_mixed_precision_keeps_the_table_and_its_gradient_sparse():
    layer = built_layer(dtype="mixed_float16")
    with tf.GradientTape() as tape:
        y = layer(tf.constant([[1, 2], [3, 4]]))
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
    grad = tape.gradient(loss, layer.embeddings)
    assert y.dtype == tf.float16 and layer.embeddings.dtype == "float32"
    assert isinstance(grad, tf.IndexedSlices) and grad.values.dtype == tf.float32


def bag_model(combiner="mean", **layer_options) -> keras.Model:
    keras.utils.set_random_seed(0)
    ids = keras.Input([5], dtype="int32")
    h = EmbeddingBag(VOCAB, DIM, combiner=combiner, **layer_options)(ids)
    return keras.Model(ids, keras.layers.Dense(1)(h))


def bag_data(n=64):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10, size=(n, 5)).astype("int32")  # rows 10.. are never used
    return ids, (ids % 3 == 0).sum(1, keepdims=True).astype("float32")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_updates_only_the_rows_used(optimizer):
    ids, y = bag_data()
    model = bag_model()
    config = {"class_name": optimizer, "config": {"learning_rate": 0.05}}
    model.compile(optimizer=keras.optimizers.get(config), loss="mse")
    before = model.layers[1].embeddings.numpy().copy()
    losses = model.fit(ids, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    after = model.layers[1].embeddings.numpy()
    assert losses[-1] < losses[0], losses
    np.testing.assert_array_equal(after[10:], before[10:])
    assert (np.abs(after[:10] - before[:10]) > 0).all(axis=1).all()


def test_the_optimizer_step_is_a_scatter():
    """The table's gradient reaches SGD as IndexedSlices and is applied with a
    sparse scatter, not a dense update of the whole table."""
    layer = built_layer()
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([layer.embeddings])

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ids) ** 2)
        grad = tape.gradient(loss, layer.embeddings)
        optimizer.apply([grad], [layer.embeddings])
        return grad

    ids = tf.constant([[1, 2], [2, 5]])
    grad = step(ids)
    assert isinstance(grad, tf.IndexedSlices) and grad.values.shape == (4, DIM)
    graph_ops = {op.type for op in step.get_concrete_function(ids).graph.get_operations()}
    nested = {n.op for f in step.get_concrete_function(ids).graph.as_graph_def().library.function for n in f.node_def}
    assert any("Scatter" in op for op in graph_ops | nested), sorted(graph_ops | nested)


def test_ragged_bags_train_under_tf_function():
    layer = built_layer(combiner="sqrtn")
    optimizer = keras.optimizers.Adam(0.1)
    before = layer.embeddings.numpy().copy()

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int64)])
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((layer(ids) - 1.0) ** 2)
        variables = layer.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    step(tf.ragged.constant([[1, 2, 3], [], [3]], tf.int64))
    step(tf.ragged.constant([[3], [1]], tf.int64))
    after = layer.embeddings.numpy()
    changed = np.flatnonzero(np.abs(after - before).max(1))
    assert changed.tolist() == [1, 2, 3]


def test_config_round_trip_and_regularizer():
    layer = EmbeddingBag(
        VOCAB,
        DIM,
        combiner="sqrtn",
        embeddings_initializer="zeros",
        embeddings_regularizer="l2",
        embeddings_constraint="non_neg",
        name="bag",
    )
    clone = EmbeddingBag.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(tf.constant([[1, 2]]))
    assert len(clone.losses) == 1 and clone.embeddings.numpy().sum() == 0
    assert keras.saving.get_registered_name(EmbeddingBag) == "tfkit>EmbeddingBag"


@pytest.mark.parametrize("num_shards", [None, 3])
def test_keras_file_and_saved_model_in_a_fresh_process(tmp_path, num_shards):
    ids, y = bag_data()
    model = bag_model("sum", num_shards=num_shards)
    model.compile(optimizer="adam", loss="mse")
    model.fit(ids, y, epochs=1, verbose=0)
    expected = model.predict(ids, verbose=0)
    model.save(tmp_path / "model.keras")
    model.export(str(tmp_path / "exported"), verbose=False)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "expected.npy", expected)
    code = f"""
import keras, numpy as np, tensorflow as tf, tfkit
ids, expected = np.load({str(tmp_path / "ids.npy")!r}), np.load({str(tmp_path / "expected.npy")!r})
loaded = keras.models.load_model({str(tmp_path / "model.keras")!r})
assert isinstance(loaded.layers[1], tfkit.layers.EmbeddingBag)
np.testing.assert_array_equal(loaded.predict(ids, verbose=0), expected)
served = tf.saved_model.load({str(tmp_path / "exported")!r})
np.testing.assert_array_equal(served.serve(ids).numpy(), expected)
print("fresh-process outputs identical")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fresh-process outputs identical" in result.stdout


def test_weights_as_a_second_functional_input_train():
    ids, weights = keras.Input([4], dtype="int32"), keras.Input([4])
    layer = EmbeddingBag(VOCAB, DIM, combiner="sqrtn")
    as_list = keras.Model([ids, weights], layer([ids, weights]))
    as_kwarg = keras.Model([ids, weights], layer(ids, weights=weights))
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, VOCAB, size=(8, 4)).astype("int32"), rng.uniform(0.5, 2, size=(8, 4)).astype("float32")
    np.testing.assert_array_equal(as_list.predict([x, w], verbose=0), as_kwarg.predict([x, w], verbose=0))
    as_list.compile(optimizer="sgd", loss="mse")
    before = layer.embeddings.numpy().copy()
    as_list.fit([x, w], np.ones((8, DIM), np.float32), epochs=1, verbose=0)
    unused = np.setdiff1d(np.arange(VOCAB), x)
    np.testing.assert_array_equal(layer.embeddings.numpy()[unused], before[unused])


# Row shards ---------------------------------------------------------------


def test_num_shards_makes_row_shard_weights_in_the_even_layout():
    layer = built_layer(num_shards=3)
    assert [w.path.split("/")[-1] for w in layer.weights] == [f"embeddings_{i}" for i in range(3)]
    assert [tuple(w.shape) for w in layer.embeddings] == [(14, DIM), (13, DIM), (13, DIM)]
    clone = EmbeddingBag.from_config(layer.get_config())
    assert clone.num_shards == 3 and clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match=r"num_shards must be in \[1, 40\]"):
        EmbeddingBag(VOCAB, DIM, num_shards=41)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_a_sharded_layer_equals_the_unsharded_one_on_the_same_table(combiner):
    sharded, whole = built_layer(num_shards=3, combiner=combiner), built_layer(combiner=combiner)
    whole.embeddings.assign(np.concatenate([w.numpy() for w in sharded.embeddings]))
    ids = tf.constant(np.random.default_rng(3).integers(0, VOCAB, size=(6, 7)), tf.int32)
    weights = tf.constant(np.random.default_rng(4).uniform(0.5, 2, size=(6, 7)), tf.float32)
    np.testing.assert_allclose(
        sharded(ids, weights=weights).numpy(), whole(ids, weights=weights).numpy(), rtol=1e-6, atol=1e-6
    )


def test_a_sharded_checkpoint_restores_into_the_same_shard_count(tmp_path):
    trained = bag_model("mean", num_shards=2)
    ids, y = bag_data()
    trained.compile(optimizer="adam", loss="mse")
    trained.fit(ids, y, epochs=1, verbose=0)
    tf.train.Checkpoint(model=trained).write(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(1)
    fresh = bag_model("mean", num_shards=2)
    tf.train.Checkpoint(model=fresh).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    for got, want in zip(fresh.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_sharded_model_is_served_by_tfkit_serve(tmp_path):
    import requests

    from tfkit.serving.launch import ServerProcess

    ids, _ = bag_data(8)
    model = bag_model("sqrtn", num_shards=3)
    expected = model.predict(ids, verbose=0)
    model.export(str(tmp_path / "bags" / "1"), verbose=False)
    with ServerProcess([str(tmp_path / "bags"), "--model_name", "bags"]) as server:
        response = requests.post(
            f"{server.rest_url}/v1/models/bags:predict", json={"instances": ids.tolist()}, timeout=60
        )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(np.array(response.json()["predictions"]), expected, rtol=1e-6, atol=1e-6)
