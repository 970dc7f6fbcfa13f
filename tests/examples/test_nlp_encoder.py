"""examples/nlp_encoder.py: its quick setting end to end, and in process:
the task's labels, the masks the encoder relies on, and that its Keras twin
is the same function of the same weights."""

import numpy as np
import pytest

from tests.examples.runs import assert_served, assert_timed, example_module, reached, run_quick

# Run alone, after the parallel suite: they serve a model and time training
# (see docs/testing.md).
pytestmark = pytest.mark.serial

encoder = example_module("nlp_encoder")


def test_labels_count_the_earlier_equal_tokens():
    tokens, labels, weights = encoder.sequences(64, seed=5)
    for row in range(64):
        for t in range(1, tokens.shape[1]):
            if tokens[row, t] > 1:
                count = int((tokens[row, :t] == tokens[row, t]).sum())
                assert labels[row, t] == min(count, encoder.CAP)
    assert ((tokens > 1) == (weights > 0)).all()
    assert (tokens[:, 0] == 1).all()


def test_batches_have_different_lengths_and_the_right_count():
    data = encoder.sequences(2000, seed=3)
    dataset = encoder.batched(data, 64)
    lengths = {features["tokens"].shape[1] for features, _, _ in dataset}
    assert lengths == {boundary - 1 for boundary in encoder.BUCKETS}
    assert sum(1 for _ in dataset) == dataset.cardinality().numpy()


def model_pair(norm):
    ours, theirs = encoder.build_model("tfkit", norm), encoder.build_model("keras", norm)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("norm", ["rms", "layer"])
def test_the_keras_twin_computes_the_same_function(norm):
    ours, theirs = model_pair(norm)
    tokens = {"tokens": encoder.sequences(16, seed=7)[0]}
    np.testing.assert_allclose(ours(tokens).numpy(), theirs(tokens).numpy(), rtol=1e-4, atol=1e-4)


def test_the_attention_is_causal_and_blind_to_padding():
    ours, _ = model_pair("rms")
    tokens = encoder.sequences(8, seed=9)[0]
    before = ours({"tokens": tokens}).numpy()
    later = tokens.copy()
    later[:, 6:] = np.where(later[:, 6:] > 1, (later[:, 6:] - 1) % encoder.VOCAB + 2, later[:, 6:])
    np.testing.assert_allclose(ours({"tokens": later}).numpy()[:, :6], before[:, :6], atol=1e-5)
    # Pads in front (which the causal mask alone would let every token see):
    # the same answers, the rotary embedding depending only on distances.
    padded = ours({"tokens": np.pad(tokens, [[0, 0], [7, 0]])}).numpy()[:, 7:]
    real = tokens > 0
    np.testing.assert_allclose(padded[real], before[real], atol=1e-4)


def test_quick_run_learns_the_task_times_both_models_and_serves(tmp_path):
    output = run_quick("nlp_encoder.py", tmp_path)
    chance = float(output.split("always guessing the commonest count: ")[1].split()[0])
    assert reached(output, "tfkit") > chance + 0.2
    assert reached(output, "Keras layers") > chance + 0.2
    assert_timed(output)
    assert_served(output)
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "encoder.keras").is_file()
