"""examples/vision_stn.py: its quick setting end to end, and in process:
the distortions, the identity the spatial transformer starts at, and that
its composite twin is the same function of the same weights."""

import numpy as np
import pytest

from tests.examples.runs import assert_served, assert_timed, example_module, reached, run_quick

# Run alone, after the parallel suite: they serve a model and time training
# (see docs/testing.md).
pytestmark = pytest.mark.serial

vision = example_module("vision_stn")


def test_distortions_are_per_copy_and_keep_the_splits_apart():
    (train, train_labels), (held_out, held_out_labels) = vision.distorted_digits(copies=2)
    assert train.shape[1:] == (vision.SIZE, vision.SIZE, 1) and len(train) == 2 * (1797 - vision.HELD_OUT_DIGITS)
    assert len(held_out) == 2 * vision.HELD_OUT_DIGITS
    assert 0 <= train.min() and train.max() <= 1
    assert np.abs(train[0] - train[1]).max() > 0.1  # two copies of one digit, distorted differently
    assert set(np.unique(train_labels)) == set(range(10)) == set(np.unique(held_out_labels))


def test_the_transformer_starts_at_the_identity_and_the_twin_matches():
    ours, twin = vision.build_model("sampling"), vision.build_model("composite")
    twin.set_weights(ours.get_weights())
    images = {"image": vision.distorted_digits(copies=1)[1][0][:8]}
    transformer = vision.keras.Model(ours.inputs, ours.get_layer("transformer").output)
    np.testing.assert_allclose(transformer(images).numpy(), images["image"], atol=1e-5)
    np.testing.assert_allclose(ours(images).numpy(), twin(images).numpy(), rtol=1e-4, atol=1e-5)


def test_quick_run_learns_both_classifiers_times_them_and_serves(tmp_path):
    output = run_quick("vision_stn.py", tmp_path)
    assert reached(output, "spatial transformer + deformable conv") > 0.3  # 10 classes
    assert reached(output, "plain CNN") > 0.3
    assert_timed(output)
    assert_served(output)
    for picture in ("accuracy.png", "transformer_grid.png"):
        assert (tmp_path / picture).stat().st_size > 0
    assert (tmp_path / "digits_stn.keras").is_file()
