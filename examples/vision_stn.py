"""Digits under random distortions: a classifier with learned sampling
(a spatial transformer and a deformable convolution) against the same
classifier without them.

scikit-learn's 8x8 digits are upsampled to 20x20, put in 32x32 images and
distorted, each copy differently, by a random affine transform (rotation,
scale, shear, translation) and a smooth elastic field, both applied as one flow with
`tfkit.image.dense_image_warp`. Digits are split into training and held-out
ones before they are distorted, so no held-out digit is seen in training.

The classifier: a localization network predicts each image's affine
transform (starting at the identity), `tfkit.layers.SpatialTransformer`
resamples the image through it, and a small CNN whose middle convolution is
a `tfkit.layers.DeformableConv2D` classifies the result. The plain
classifier is the same CNN with a Keras `Conv2D` in place of the deformable
one and no spatial transformer. Keras has no layer for either kind of
sampling; the speed twin is therefore the same model with both layers
computed by their TensorFlow composites (tfkit's references, as a Keras
user would write them in TensorFlow ops), with the same weights.

  python examples/vision_stn.py [--quick] [--out DIR]

Both classifiers are trained with model.fit; the learned-sampling model is
timed against its twin with and without XLA, saved (.keras), exported,
checked (`tfkit check`), served (`tfkit serve`) and queried over REST and
gRPC. Writes the accuracy curves and a grid of inputs beside what the
spatial transformer made of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import end_to_end
import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from sklearn.datasets import load_digits

import tfkit

SIZE, DIGIT, CLASSES, HELD_OUT_DIGITS = 32, 20, 10, 397  # 20x20 digits in 32x32 images
SETTINGS = {  # distorted copies of each digit, epochs, batch, timed steps per round
    "quick": {"copies": 3, "epochs": 6, "batch": 64, "timed": 20},
    "full": {"copies": 12, "epochs": 15, "batch": 64, "timed": 60},
}
MODEL_NAME, LEARNING_RATE = "digits_stn", 2e-3


# --- Data: distorted digits ---------------------------------------------------------


def distortion_flows(count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, SIZE, SIZE, 2] flows (dy, dx) of a random affine transform
    about the centre plus a smooth elastic field, as dense_image_warp takes them."""
    angle = rng.uniform(-0.6, 0.6, count)
    scale = rng.uniform(0.8, 1.4, (count, 1, 1))  # above 1 shrinks the digit
    shear = rng.uniform(-0.25, 0.25, count)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = scale * np.stack([np.stack([cos, -sin + shear], -1), np.stack([sin, cos], -1)], -2)
    shift = rng.uniform(-5, 5, (count, 1, 1, 2))
    centre = (SIZE - 1) / 2
    pixel = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij"), -1) - centre  # (y, x)
    source = np.einsum("nij,hwj->nhwi", matrix, pixel) + shift
    coarse = rng.normal(scale=1.5, size=(count, 5, 5, 2)).astype("float32")
    elastic = tf.image.resize(coarse, (SIZE, SIZE), method="bicubic").numpy()
    return (pixel - source - elastic).astype("float32")


def distorted_digits(copies: int, seed: int = 0):
    """(train, held_out), each (images [n, SIZE, SIZE, 1] in [0, 1], labels [n])."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    images = tf.image.resize(digits.images[..., None].astype("float32") / 16, (DIGIT, DIGIT))
    margin = (SIZE - DIGIT) // 2
    images = tf.pad(images, [[0, 0], [margin, SIZE - DIGIT - margin], [margin, SIZE - DIGIT - margin], [0, 0]]).numpy()
    splits = []
    for chosen, repeats in ((order[HELD_OUT_DIGITS:], copies), (order[:HELD_OUT_DIGITS], 2)):
        clean = np.repeat(images[chosen], repeats, axis=0)
        warped = tfkit.image.dense_image_warp(clean, distortion_flows(len(clean), rng)).numpy()
        splits.append((np.clip(warped, 0, 1), np.repeat(digits.target[chosen], repeats).astype("int32")))
    return splits


# --- The classifiers ----------------------------------------------------------------


def localization(image) -> tf.Tensor:
    """The affine transform [batch, 6] predicted for each image, the identity at first."""
    x = keras.layers.Conv2D(8, 5, strides=2, activation="relu", name="loc_conv1")(image)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="loc_conv2")(x)
    x = keras.layers.Dense(32, activation="relu", name="loc_dense")(keras.layers.Flatten()(x))
    identity = keras.initializers.Constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    return keras.layers.Dense(6, kernel_initializer="zeros", bias_initializer=identity, name="theta")(x)


def build_model(kind: str) -> keras.Model:
    """ "sampling": spatial transformer and deformable convolution (tfkit's
    kernels); "composite": the same, computed by TensorFlow composites;
    "plain": neither."""
    image = keras.Input([SIZE, SIZE, 1], name="image")
    backend = "reference" if kind == "composite" else None
    x = image
    if kind != "plain":
        x = tfkit.layers.SpatialTransformer(backend=backend, name="transformer")([image, localization(image)])
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    if kind == "plain":
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    else:
        x = tfkit.layers.DeformableConv2D(32, 3, padding="same", activation="relu", backend=backend, name="deform")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model({"image": image}, keras.layers.Dense(CLASSES, name="digit")(x), name=f"digits_{kind}")


# --- Training, timing, report --------------------------------------------------------


def compiled(model: keras.Model, jit: bool) -> keras.Model:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return end_to_end.compiled(
        model, jit, LEARNING_RATE, loss, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    )


def fit(model: keras.Model, train, held_out, setting: dict) -> list[float]:
    print(f"\n{model.name}: model.fit, {setting['epochs']} epochs")
    history = compiled(model, jit=False).fit(
        {"image": train[0]},
        train[1],
        batch_size=setting["batch"],
        epochs=setting["epochs"],
        validation_data=({"image": held_out[0]}, held_out[1]),
        verbose=1,
    )
    return history.history["val_accuracy"]


def accuracy(model: keras.Model, data) -> float:
    return float((end_to_end.predict(model, {"image": data[0]}).argmax(-1) == data[1]).mean())


def timed_models(initial: list, train, setting: dict) -> dict:
    """The learned-sampling model ("tfkit") and its composite twin ("keras")."""
    batches = tf.data.Dataset.from_tensor_slices(({"image": train[0]}, train[1])).batch(setting["batch"])
    models = {}
    for flavor, kind in zip(end_to_end.FLAVORS, ("sampling", "composite"), strict=True):
        for jit in (False, True):
            models[flavor, jit] = compiled(build_model(kind), jit)
            models[flavor, jit].set_weights(initial)
    return end_to_end.steps_per_second(models, batches.repeat(), setting["timed"])


def plot_grid(model: keras.Model, images: np.ndarray, path: Path, count: int = 10) -> None:
    """Held-out inputs (top row) and what the spatial transformer made of them."""
    transformer = model.get_layer("transformer")
    probe = keras.Model(model.inputs, transformer.output)
    outputs = probe({"image": images[:count]}, training=False).numpy()
    figure = Figure(figsize=(count, 2.3))
    axes = figure.subplots(2, count)
    for column in range(count):
        for row, picture in enumerate((images[column], outputs[column])):
            axes[row, column].imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[row, column].axis("off")
    figure.suptitle("held-out inputs (top) and the spatial transformer's outputs (bottom)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"spatial transformer grid: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/examples/vision_stn"))
    parser.add_argument("--quick", action="store_true", help="a small setting (about a minute)")
    args = parser.parse_args()
    setting = SETTINGS["quick" if args.quick else "full"]
    args.out.mkdir(parents=True, exist_ok=True)
    train, held_out = distorted_digits(setting["copies"])
    print(f"{len(train[0])} distorted training images, {len(held_out[0])} held out (of unseen digits)")

    keras.utils.set_random_seed(0)
    ours, twin, plain = build_model("sampling"), build_model("composite"), build_model("plain")
    initial = end_to_end.same_initial_weights(ours, twin)
    curves = {
        "spatial transformer + deformable conv": fit(ours, train, held_out, setting),
        "plain CNN": fit(plain, train, held_out, setting),
    }
    reached = {
        "spatial transformer + deformable conv": accuracy(ours, held_out),
        "plain CNN": accuracy(plain, held_out),
    }
    print("\ntiming training steps (model.fit, the same weights and batches), with and without XLA ...")
    rates = timed_models(initial, train, setting)

    end_to_end.plot_curves(args.out / "accuracy.png", curves, "held-out accuracy", "Distorted digits")
    plot_grid(ours, held_out[0], args.out / "transformer_grid.png")
    served = end_to_end.save_export_serve(ours, args.out, MODEL_NAME, {"image": held_out[0][:8]})
    parameters = {
        "parameters": {"spatial transformer + deformable conv": ours.count_params(), "plain CNN": plain.count_params()}
    }
    end_to_end.print_metric_table("held-out accuracy", reached, parameters)
    end_to_end.print_speed_table(rates, theirs="TF composites")
    return 0 if served and min(reached.values()) > 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
