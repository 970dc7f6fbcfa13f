"""What the end-to-end examples share: the same initial weights in both
models, timing their training steps, the tables, the curves, and the path
from a trained model to a served one (.keras, SavedModel, `tfkit check`,
`tfkit serve`, one REST and one gRPC request)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import keras
import numpy as np
import requests
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfkit.serving.launch import ServerProcess

FLAVORS = ("tfkit", "keras")
ROUNDS, TIMEOUT = 7, 30


def same_initial_weights(ours: keras.Model, theirs: keras.Model) -> list:
    """Gives `theirs` the weights of `ours` (they must have the same layout)."""
    if ours.count_params() != theirs.count_params():
        raise SystemExit(f"parameter counts differ: {ours.count_params()} vs {theirs.count_params()}")
    initial = ours.get_weights()
    theirs.set_weights(initial)
    print(f"both models: {ours.count_params()} parameters, the same initial weights")
    return initial


def compiled(model: keras.Model, jit: bool, learning_rate: float, loss, **metrics) -> keras.Model:
    """`model` compiled with Adam, `loss` and `metrics` (compile's metric
    arguments), with or without XLA."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, jit_compile=jit, **metrics)
    return model


class _StepClock(keras.callbacks.Callback):
    """When each training step of one fit call ended."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())

    def rate(self) -> float:
        """Steps/s between the first step's end and the last's: the steady
        state, without fit's own start and end."""
        return (len(self.ends) - 1) / (self.ends[-1] - self.ends[0])


def steps_per_second(models: dict, batches: tf.data.Dataset, steps: int) -> dict:
    """Training steps/s of each compiled model (keyed (flavor, jit)) with
    model.fit on the same `steps` batches, timed in turn for ROUNDS rounds
    after a warm-up pass over them, which traces and compiles for every
    batch shape: {key: (median, low, high)}."""
    batches = batches.take(steps).cache()
    for _ in batches:  # fills the cache, which only a complete pass keeps
        pass
    batches = batches.repeat()
    for model in models.values():
        model.fit(batches, steps_per_epoch=steps, shuffle=False, verbose=0)
    rates, clock = {key: [] for key in models}, _StepClock()
    for _ in range(ROUNDS):
        for key, model in models.items():
            model.fit(batches, steps_per_epoch=steps + 1, shuffle=False, callbacks=[clock], verbose=0)
            rates[key].append(clock.rate())
    return {key: (statistics.median(r), min(r), max(r)) for key, r in rates.items()}


def print_metric_table(metric: str, reached: dict, extra: dict | None = None) -> None:
    """| model | metric | extra columns |, one row per model."""
    extra = extra or {}
    print(f"\n| model | {metric} |" + "".join(f" {name} |" for name in extra))
    print("|---|---:|" + "---:|" * len(extra))
    for model, value in reached.items():
        cells = "".join(f" {column[model]} |" for column in extra.values())
        print(f"| {model} | {value:.4f} |{cells}")


def print_speed_table(rates: dict, theirs: str = "Keras layers") -> None:
    """Steps/s of the tfkit model against its twin (`theirs`), with and
    without XLA: medians of ROUNDS rounds, the ratio of the medians, and
    each one's range."""
    if not rates:
        return
    header = f"tfkit | {theirs} | tfkit / {theirs} | tfkit range | {theirs} range"
    print(f"\n| training steps/s (median of {ROUNDS}) | {header} |")
    print("|---|---:|---:|---:|---|---|")
    for jit in (False, True):
        ours, twin = rates.get(("tfkit", jit)), rates.get(("keras", jit))
        if ours and twin:
            spread = [f"{low:.1f}-{high:.1f}" for _, low, high in (ours, twin)]
            print(
                f"| {'XLA' if jit else 'no XLA'} | {ours[0]:.1f} | {twin[0]:.1f} | {ours[0] / twin[0]:.2f}x"
                f" | {spread[0]} | {spread[1]} |"
            )


def plot_curves(path: Path, curves: dict, ylabel: str, title: str, best: float | None = None) -> None:
    """One line per model over the epochs (and the best achievable value)."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", label=name)
    if best is not None:
        axes.axhline(best, color="black", linestyle="--", label=f"best achievable ({best:.3f})")
    axes.set(xlabel="epoch", ylabel=ylabel, title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"curves: {path}")


def predict(model: keras.Model, features: dict, chunk: int = 4096) -> np.ndarray:
    """The model called on chunks of the features (Keras's predict has no
    ParameterServerStrategy support)."""
    count = len(next(iter(features.values())))
    chunks = [{k: v[i : i + chunk] for k, v in features.items()} for i in range(0, count, chunk)]
    return np.concatenate([model(c, training=False).numpy() for c in chunks])


# --- Export, check, serve -----------------------------------------------------


def rest_predict(url: str, name: str, features: dict) -> np.ndarray:
    count = len(next(iter(features.values())))
    rows = [{key: value[i].tolist() for key, value in features.items()} for i in range(count)]
    response = requests.post(f"{url}/v1/models/{name}:predict", json={"instances": rows}, timeout=TIMEOUT)
    response.raise_for_status()
    return np.array(response.json()["predictions"], np.float32)


def grpc_predict(target: str, name: str, features: dict) -> np.ndarray:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    for key, value in features.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=TIMEOUT)
    (output,) = response.outputs.values()
    return tf.make_ndarray(output)


def _gap(answer: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference, relative to the answer's size where it passes 1."""
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    return float(np.abs(answer.reshape(expected.shape) - expected).max(initial=0.0)) / scale


def save_export_serve(model: keras.Model, out: Path, name: str, features: dict, tolerance: float = 1e-6) -> bool:
    """.keras file, SavedModel, `tfkit check`, `tfkit serve`; True when the
    reloaded model, REST and gRPC all answer as the model does in process
    (within `tolerance`, relative to the outputs' size where it passes 1)."""
    expected = predict(model, features)
    model.save(out / f"{name}.keras")
    reloaded = _gap(predict(keras.models.load_model(out / f"{name}.keras"), features), expected)
    print(f"\nsaved {out / name}.keras; reloaded outputs differ by {reloaded:.2g}")
    export = out / name / "1"
    model.export(str(export), verbose=False)
    check = subprocess.run([sys.executable, "-m", "tfkit", "check", str(export)], capture_output=True, text=True)
    print(f"tfkit check {export}: exit {check.returncode}: {check.stdout.strip().splitlines()[-1:]}")
    with ServerProcess([str(export.parent), "--model_name", name], start_timeout=120) as server:
        gaps = {
            "REST": _gap(rest_predict(server.rest_url, name, features), expected),
            "gRPC": _gap(grpc_predict(server.grpc_target, name, features), expected),
        }
        status = server.stop()
    for way, gap in gaps.items():
        verdict = "matches" if gap <= tolerance else "DIFFERS from"
        print(f"{way} answer {verdict} the in-process prediction (max |diff| {gap:.2g}) for {len(expected)} rows")
    print(f"tfkit serve stopped by SIGTERM, exit status {status}")
    return max(*gaps.values(), reloaded) <= tolerance and check.returncode == 0 and status == 0
