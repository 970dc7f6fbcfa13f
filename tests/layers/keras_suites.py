"""Keras's own test suites from the installed keras wheel, run with tfkit's
drop-in layers in place of Keras's.

`run_suites(layers, ...)` runs the suites in a fresh pytest process. With
`layers="keras"` they run as Keras ships them (the baseline); with
`layers="tfkit"` the name `layers` in each suite's module is a namespace in
which the swapped classes are tfkit's and every other name is Keras's.
Nothing else in the suites changes. The same module is that process's pytest
plugin: it makes the swap, counts the tfkit instances each test creates and
the calls of their fused ops, and writes every test's outcome to a JSON
report.
"""

from __future__ import annotations

import collections
import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

# Keras's test file (in its package) -> the names of `layers` it swaps.
SUITES = {
    "layer_normalization": ("src/layers/normalization/layer_normalization_test.py", ["LayerNormalization"]),
    "rms_normalization": ("src/layers/normalization/rms_normalization_test.py", ["RMSNormalization"]),
    "dense": ("src/layers/core/dense_test.py", ["Dense"]),
    "multi_head_attention": ("src/layers/attention/multi_head_attention_test.py", ["MultiHeadAttention"]),
}

# Keras's class name -> tfkit's drop-in, and the fused op (module, name) it calls.
DROP_INS = {
    "LayerNormalization": ("LayerNorm", ("tfkit.ops.norm", "layer_norm")),
    "RMSNormalization": ("RMSNorm", ("tfkit.ops.norm", "rms_norm")),
    "Dense": ("Dense", ("tfkit.ops.activation", "bias_activation")),
    "MultiHeadAttention": ("MultiHeadAttention", ("tfkit.ops.attention", "dot_product_attention")),
}

_LAYERS_ENV = "TFKIT_KERAS_SUITE_LAYERS"
_REPORT_ENV = "TFKIT_KERAS_SUITE_REPORT"

# Registered by Keras's own conftest, which the wheel does not ship.
_MARKERS = ["requires_trainable_backend: needs a backend that trains"]


def keras_package_dir() -> Path:
    import keras

    return Path(keras.__file__).resolve().parent


def suite_path(suite: str) -> Path:
    return keras_package_dir() / SUITES[suite][0]


def run_suites(layers: str, suites: list[str], workdir: Path, timeout: float = 600) -> dict:
    """Runs the suites in one pytest process; returns its report: the
    outcome of each test id, the tfkit instances each test created and the
    fused op calls it made, and what `layers` held."""
    workdir.mkdir(parents=True, exist_ok=True)
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\nmarkers =\n" + "".join(f"    {marker}\n" for marker in _MARKERS))
    report = workdir / f"{layers}.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-p",
        __name__,
        "-c",
        str(ini),
        "--rootdir",
        str(keras_package_dir().parent),
        *(str(suite_path(suite)) for suite in suites),
    ]
    root = Path(__file__).resolve().parents[2]
    # Nothing is written into the keras package (its tests' bytecode included).
    env = {**os.environ, _LAYERS_ENV: layers, _REPORT_ENV: str(report), "PYTHONPATH": str(root)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout)
    if not report.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {result.returncode}):\n{result.stdout[-3000:]}")
    return json.loads(report.read_text())


def suite_of(test_id: str) -> str:
    path = test_id.split("::")[0]
    return next(suite for suite, (file, _) in SUITES.items() if path.endswith(file))


# The plugin, in the pytest process run_suites starts -------------------------


class SwappedLayers(types.ModuleType):
    """`keras.src.layers` with some of its classes replaced."""

    def __init__(self, keras_layers: types.ModuleType, replacements: dict[str, type]):
        super().__init__(keras_layers.__name__)
        self._keras_layers = keras_layers
        self.__dict__.update(replacements)

    def __getattr__(self, name: str):
        return getattr(self._keras_layers, name)


def _replacements(layers: str, names: list[str]) -> dict[str, type]:
    if layers == "keras":
        return {}
    import tfkit.layers

    return {name: getattr(tfkit.layers, DROP_INS[name][0]) for name in names}


class _Report:
    def __init__(self, layers: str, path: str):
        self.layers = layers
        self.path = path
        self.outcomes: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.created: collections.Counter = collections.Counter()
        self.fused: collections.Counter = collections.Counter()
        self.swapped: dict[str, dict[str, str]] = {}
        self.current: str | None = None

    def count_instances(self, cls: type) -> None:
        """Counts each instance of `cls` (and its subclasses) made during a test."""
        make = cls.__new__
        report = self

        def counting_new(klass, *args, **kwargs):
            if report.current is not None:
                report.created[report.current] += 1
            return make(klass, *args, **kwargs)

        cls.__new__ = staticmethod(counting_new)

    def count_calls(self, module_name: str, name: str) -> None:
        """Counts the calls of a fused op during each test."""
        module = importlib.import_module(module_name)
        op = getattr(module, name)
        report = self

        def counting_op(*args, **kwargs):
            if report.current is not None:
                report.fused[report.current] += 1
            return op(*args, **kwargs)

        setattr(module, name, counting_op)

    def record(self, test_id: str, when: str, outcome: str, text: str) -> None:
        if outcome == "failed":
            self.outcomes[test_id] = "failed"
            self.errors.setdefault(test_id, f"{when}: {_error_lines(text)}")
        elif outcome == "skipped" and self.outcomes.get(test_id) != "failed":
            self.outcomes[test_id] = "skipped"
        elif when == "call":
            self.outcomes.setdefault(test_id, outcome)

    def write(self, collected: list[str]) -> None:
        found = {
            "layers": self.layers,
            "collected": collected,
            "outcomes": self.outcomes,
            "errors": self.errors,
            "created": dict(self.created),
            "fused": dict(self.fused),
            "swapped": self.swapped,
        }
        Path(self.path).write_text(json.dumps(found, indent=1))


def _error_lines(text: str, most: int = 8) -> str:
    """The error lines of a failure's report (pytest's 'E' lines) and where it failed."""
    lines = text.splitlines()
    errors = [line for line in lines if line.startswith("E ")][-most:]
    return "\n".join(errors + lines[-1:])


_report: _Report | None = None
_collected: list[str] = []


def pytest_configure(config):
    global _report
    if os.environ.get(_REPORT_ENV):
        _report = _Report(os.environ[_LAYERS_ENV], os.environ[_REPORT_ENV])


def pytest_collection_finish(session):
    if _report is None:
        return
    keras_layers = importlib.import_module("keras.src.layers")
    namespaces = {}
    for item in session.items:
        _collected.append(item.nodeid)
        module = item.module
        if module.__name__ not in namespaces:
            names = SUITES[suite_of(item.nodeid)][1]
            replacements = _replacements(_report.layers, names)
            for name, cls in replacements.items():
                _report.count_instances(cls)
                _report.count_calls(*DROP_INS[name][1])
            namespaces[module.__name__] = SwappedLayers(keras_layers, replacements)
            module.layers = namespaces[module.__name__]
            _report.swapped[suite_of(item.nodeid)] = {
                name: f"{getattr(module.layers, name).__module__}.{getattr(module.layers, name).__qualname__}"
                for name in names
            }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _report is not None:
        _report.current = item.nodeid
    try:
        return (yield)
    finally:
        if _report is not None:
            _report.current = None


def pytest_runtest_logreport(report):
    if _report is not None:
        _report.record(report.nodeid, report.when, report.outcome, report.longreprtext)


def pytest_sessionfinish(session):
    if _report is not None:
        _report.write(_collected)
