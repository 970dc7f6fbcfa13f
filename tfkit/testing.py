"""`opcheck`: one call that checks an op the way tfkit checks its own.

    report = tfkit.testing.opcheck(tfkit.ops.layer_norm, [x, gamma, beta], {"epsilon": 1e-3})
    print(report)

Sub-checks (each passed, failed with the numbers, or skipped with the reason):

- static_shapes: traced with unknown dimensions (and unknown rank where the
  op allows it), the outputs' static shapes and dtypes agree with the eager
  results and are as specific as the inputs allow;
- eager_vs_graph: eager, tf.function and tf.function with unknown dimensions
  give the same results;
- reference: the op against its reference (given, or the Op's own reference
  or prototype), with dtype-aware tolerances;
- gradients: numeric vs analytic in float64 where the op supports it (the
  full Jacobian for small inputs, random directional derivatives for large
  ones), and the op's gradients against the reference's;
- xla: the op under jit_compile=True with the default backend (a prototype
  with no reference must be refused cleanly);
- saved_model: a tf.Module using the op, saved and loaded in a fresh process
  that imports only tfkit and the modules named, gives identical outputs (a
  prototype's export must be refused, leaving nothing behind);
- bad_inputs: each given bad argument set raises InvalidArgumentError,
  eagerly and in a graph, in a fresh process that must not crash;
- threads: eight threads calling the op at once give the serial results.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfkit import saved_model as _saved_model
from tfkit.declare import Op
from tfkit.prototype import PrototypeGradientError

__all__ = ["CHECKS", "CheckResult", "OpCheckReport", "opcheck"]

CHECKS = ("static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "saved_model", "bad_inputs", "threads")

# (rtol, atol) of an output against its reference, by dtype.
TOLERANCES = {
    tf.float64: (1e-7, 1e-7),
    tf.float32: (1e-4, 1e-4),
    tf.float16: (1e-2, 1e-2),
    tf.bfloat16: (3e-2, 6e-2),
}
_NO_GRADIENT = (LookupError, PrototypeGradientError)
_SMALL_JACOBIAN = 2048  # inputs up to this many elements get a full numeric Jacobian


class _Skip(Exception):
    """A sub-check that does not apply, with the reason."""


@dataclasses.dataclass
class CheckResult:
    status: str  # "passed", "failed" or "skipped"
    detail: str
    seconds: float


@dataclasses.dataclass
class OpCheckReport:
    op: str
    results: dict[str, CheckResult]

    def __getitem__(self, name: str) -> CheckResult:
        return self.results[name]

    def __contains__(self, name: str) -> bool:
        return name in self.results

    def __iter__(self):
        return iter(self.results)

    @property
    def failed(self) -> dict[str, CheckResult]:
        return {name: r for name, r in self.results.items() if r.status == "failed"}

    def __str__(self) -> str:
        lines = [f"opcheck {self.op}"]
        for name, r in self.results.items():
            lines.append(f"  {name:<15} {r.status:<8} {r.seconds * 1e3:8.0f} ms  {r.detail}")
        return "\n".join(lines)


def opcheck(
    op: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict | None = None,
    *,
    reference: Callable[..., Any] | None = None,
    checks: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    bad_inputs: Sequence[tuple[Sequence[Any], dict]] | None = None,
    imports: Sequence[str] | None = None,
) -> OpCheckReport:
    """Checks `op(*args, **kwargs)` and returns the report.

    Args:
      op: A `tfkit.declare.Op` (tfkit's ops and `tfkit.prototype.op` ops are),
        or any callable taking tensors positionally.
      args: The tensor arguments (float inputs are differentiated).
      kwargs: Attributes, passed unchanged to every call.
      reference: What the op must match; default: the Op's reference, else
        its prototype.
      checks: The sub-checks to run (default: all of `CHECKS`).
      atol, rtol: Tolerances for comparisons with the reference (default:
        by dtype, `TOLERANCES`).
      bad_inputs: Argument sets `(args, kwargs)` that must each raise
        InvalidArgumentError.
      imports: Modules the fresh process imports besides tfkit (default: the
        module that defines the op, where it can be imported).

    Returns:
      An `OpCheckReport` (its str is a table with each sub-check's time).

    Raises:
      AssertionError: listing every failed sub-check.
      ValueError: an unknown sub-check name.
    """
    selected = list(CHECKS if checks is None else checks)
    unknown = set(selected) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; the checks are {CHECKS}")
    case = _Case(op, [tf.convert_to_tensor(a) for a in args], dict(kwargs or {}), reference, atol, rtol)
    case.bad_sets = list(bad_inputs or [])
    case.imports = list(imports) if imports is not None else _defining_modules(op)
    results = {}
    # Each sub-check traces the op afresh on purpose; TensorFlow's retracing
    # warning would only be noise here.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        for name in selected:
            results[name] = _run_check(case, name)
    finally:
        logger.setLevel(level)
    report = OpCheckReport(case.name, results)
    if report.failed:
        lines = [f"{name}: {r.detail}" for name, r in report.failed.items()]
        raise AssertionError(f"opcheck {case.name} failed {len(lines)} check(s):\n" + "\n".join(lines))
    return report


def _run_check(case: _Case, name: str) -> CheckResult:
    start = time.perf_counter()
    try:
        status, detail = "passed", getattr(case, name)() or ""
    except _Skip as skip:
        status, detail = "skipped", str(skip)
    except AssertionError as err:
        status, detail = "failed", str(err)
    except Exception as err:
        status, detail = "failed", f"{type(err).__name__}: {err}"
    return CheckResult(status, detail, time.perf_counter() - start)


class _Case:
    """One op and its arguments; a method per sub-check."""

    def __init__(self, op, args, kwargs, reference, atol, rtol):
        self.op = op
        self.declared: Op | None = op if isinstance(op, Op) else None
        self.name = self.declared.name if self.declared else getattr(op, "__name__", repr(op))
        self.args = args
        self.kwargs = kwargs
        self.reference_fn = reference
        self.atol, self.rtol = atol, rtol
        self.bad_sets: list = []
        self.imports: list[str] = []

    # helpers -------------------------------------------------------------

    def call(self, *args, **extra):
        return _as_list(self.op(*args, **self.kwargs, **extra))

    def eager(self) -> list[tf.Tensor]:
        if not hasattr(self, "_eager"):
            self._eager = self.call(*self.args)
        return self._eager

    def specs(self, shape: str) -> list[tf.TensorSpec]:
        def spec(t):
            if shape == "static":
                return tf.TensorSpec(t.shape, t.dtype)
            if shape == "unknown_dims":
                return tf.TensorSpec([None] * t.shape.rank, t.dtype)
            return tf.TensorSpec(None, t.dtype)

        return [spec(t) for t in self.args]

    def traced(self, shape: str, **options):
        return tf.function(lambda *a: self.call(*a), input_signature=self.specs(shape), **options)

    def tolerance(self, dtype) -> tuple[float, float]:
        rtol, atol = TOLERANCES.get(tf.as_dtype(dtype), (1e-4, 1e-4))
        return (self.rtol if self.rtol is not None else rtol), (self.atol if self.atol is not None else atol)

    def assert_close(self, got, want, what: str, exact: bool = False) -> None:
        assert len(got) == len(want), f"{what}: {len(got)} outputs vs {len(want)}"
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g.dtype == w.dtype, f"{what}: output {index} dtype {g.dtype.name} vs {w.dtype.name}"
            g64, w64 = _to_numpy64(g), _to_numpy64(w)
            assert g64.shape == w64.shape, f"{what}: output {index} shape {g64.shape} vs {w64.shape}"
            rtol, atol = (0.0, 0.0) if exact else self.tolerance(g.dtype)
            bad = ~_close(g64, w64, rtol, atol)
            if bad.any():
                err = np.abs(g64 - w64)[bad].max() if np.isfinite(g64[bad] - w64[bad]).all() else float("nan")
                raise AssertionError(
                    f"{what}: output {index} differs at {int(bad.sum())} of {bad.size} elements "
                    f"(max abs error {err:.3g}, rtol {rtol:g}, atol {atol:g})"
                )

    def reference_impl(self) -> tuple[Callable[..., Any], str]:
        """The implementation to compare with, and how to name it."""
        if self.reference_fn is not None:
            return self.reference_fn, "the given reference"
        impls = self.declared.implementations if self.declared else {}
        chosen = self.declared.choose() if self.declared else None
        for kind in ("reference", "prototype"):
            if kind in impls and kind != chosen:
                return (lambda *a, _kind=kind, **k: self.op(*a, backend=_kind, **k)), f"its {kind}"
        if self.declared and len(impls) == 1:
            raise _Skip(f"the op has only its {chosen} implementation: no reference to compare with")
        raise _Skip("no reference: pass reference= or declare one (@op.reference)")

    # sub-checks ----------------------------------------------------------

    def static_shapes(self) -> str:
        eager = self.eager()
        notes = []
        for shape in ("static", "unknown_dims", "unknown_rank"):
            try:
                outputs = self.traced(shape).get_concrete_function().structured_outputs
            except Exception as err:
                if shape == "unknown_rank":
                    notes.append(f"unknown rank not supported ({type(err).__name__})")
                    continue
                raise
            for index, (traced, value) in enumerate(zip(_as_list(outputs), eager, strict=True)):
                where = f"{shape}: output {index}"
                assert traced.dtype == value.dtype, f"{where} dtype {traced.dtype.name} vs eager {value.dtype.name}"
                assert traced.shape.is_compatible_with(value.shape), f"{where} shape {traced.shape} vs {value.shape}"
                if shape == "static":
                    assert traced.shape == value.shape, f"{where}: static inputs gave shape {traced.shape}"
                if shape == "unknown_dims":
                    assert traced.shape.rank is not None, f"{where}: known input ranks gave an unknown rank"
        return "; ".join(notes)

    def eager_vs_graph(self) -> str:
        eager = self.eager()
        for shape in ("static", "unknown_dims"):
            self.assert_close(_as_list(self.traced(shape)(*self.args)), eager, f"tf.function ({shape})")
        return ""

    def reference(self) -> str:
        fn, what = self.reference_impl()
        want = _as_list(fn(*self.args, **self.kwargs))
        self.assert_close(self.eager(), want, f"against {what}")
        return f"against {what}"

    def gradients(self) -> str:
        positions = [i for i, a in enumerate(self.args) if a.dtype.is_floating]
        if not positions:
            raise _Skip("no float input to differentiate")
        try:
            analytic = self.tape_gradients(self.call, positions)
        except _NO_GRADIENT as err:
            raise _Skip(f"the op defines no gradient ({err})") from None
        notes = [self.numeric_gradients(positions)]
        try:
            fn, what = self.reference_impl()
            want = self.tape_gradients(lambda *a: _as_list(fn(*a, **self.kwargs)), positions)
        except _Skip as skip:
            notes.append(str(skip))
        except _NO_GRADIENT:
            notes.append(f"{what} defines no gradient to compare with")
        else:
            self.assert_close(analytic, want, f"gradients against {what}'s")
            notes.append(f"gradients match {what}'s")
        return "; ".join(notes)

    def tape_gradients(self, fn, positions) -> list[tf.Tensor]:
        args = list(self.args)
        weights = [tf.constant(_random_like(t, seed=7 + i)) for i, t in enumerate(self.eager())]
        with tf.GradientTape() as tape:
            for i in positions:
                tape.watch(args[i])
            loss = _weighted_sum(fn(*args), weights)
        grads = tape.gradient(loss, [args[i] for i in positions])
        if any(g is None for g in grads):
            raise LookupError("a float input got no gradient")
        return [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices (a gather's gradient) as dense

    def numeric_gradients(self, positions) -> str:
        args64 = [tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in self.args]
        precision = "float64"
        try:
            self.call(*args64)
        except Exception:
            args64, precision = list(self.args), "in the inputs' dtype (no float64 support)"
        weights = [tf.constant(_random_like(t, seed=11 + i), tf.float64) for i, t in enumerate(self.eager())]

        def scalar(*free):
            full = list(args64)
            for i, value in zip(positions, free, strict=True):
                full[i] = value
            return _weighted_sum(self.call(*full), weights)

        free = [args64[i] for i in positions]
        rtol = 1e-5 if precision == "float64" else 3e-2
        size = sum(int(np.prod(t.shape)) for t in free)
        if size <= _SMALL_JACOBIAN:
            theoretical, numerical = tf.test.compute_gradient(scalar, free, delta=1e-6 if rtol < 1e-3 else 1e-3)
            for index, (t, n) in enumerate(zip(theoretical, numerical, strict=True)):
                scale = max(1.0, float(np.abs(n).max(initial=0.0)))
                err = float(np.abs(t - n).max(initial=0.0))
                assert err <= rtol * scale, f"numeric vs analytic gradient of input {positions[index]}: {err:.3g}"
            return f"numeric vs analytic Jacobian ({precision})"
        return self.directional_check(scalar, free, rtol, precision)

    @staticmethod
    def directional_check(scalar, free, rtol, precision) -> str:
        with tf.GradientTape() as tape:
            tape.watch(free)
            value = scalar(*free)
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(value, free)]
        for seed in range(3):
            direction = [tf.constant(_random_like(t, seed=100 + seed), t.dtype) for t in free]
            h = 1e-4 if precision == "float64" else 1e-2
            plus = scalar(*[t + h * d for t, d in zip(free, direction, strict=True)])
            minus = scalar(*[t - h * d for t, d in zip(free, direction, strict=True)])
            numeric = float((plus - minus) / (2 * h))
            analytic = float(sum(tf.reduce_sum(g * d) for g, d in zip(grads, direction, strict=True)))
            assert abs(numeric - analytic) <= rtol * max(1.0, abs(numeric)) * 10, (
                f"directional derivative {seed}: numeric {numeric:.6g} vs analytic {analytic:.6g}"
            )
        return f"numeric vs analytic, 3 random directions ({precision})"

    def xla(self) -> str:
        try:
            got = _as_list(self.traced("static", jit_compile=True)(*self.args))
        except Exception as err:
            impls = self.declared.implementations if self.declared else {}
            if "reference" not in impls and "XLA" in str(err):
                return f"refused cleanly: {type(err).__name__}"
            raise
        self.assert_close(got, self.eager(), "under jit_compile=True")
        return ""

    def saved_model(self) -> str:
        return self.fresh_process()["saved_model"]

    def bad_inputs(self) -> str:
        if not self.bad_sets:
            raise _Skip("no bad_inputs given")
        if _import_path(self.op) is None:
            raise _Skip("the op can't be imported by name from a module, so it can't run in a fresh process")
        return self.fresh_process()["bad_inputs"]

    def threads(self) -> str:
        serial = [self.call(*self.args) for _ in range(2)]
        self.assert_close(serial[1], serial[0], "two serial calls", exact=True)
        results, errors = [None] * 8, []
        barrier = threading.Barrier(8)

        def worker(index):
            try:
                barrier.wait()
                for _ in range(4):
                    results[index] = self.call(*self.args)
            except Exception as err:
                errors.append(err)

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, f"a thread raised {type(errors[0]).__name__}: {errors[0]}"
        for index, result in enumerate(results):
            self.assert_close(result, serial[0], f"thread {index}", exact=True)
        return "8 threads x 4 calls"

    # the fresh process (saved_model and bad_inputs share one) ------------

    def fresh_process(self) -> dict:
        if hasattr(self, "_fresh"):
            return self._fresh
        with tempfile.TemporaryDirectory(prefix="tfkit-opcheck-") as tmp:
            self._fresh = self.run_fresh_process(Path(tmp))
        return self._fresh

    def run_fresh_process(self, tmp: Path) -> dict:
        outcome = {"saved_model": "", "bad_inputs": ""}
        job = {"imports": self.imports, "saved_model": None, "op": _import_path(self.op), "bad": []}
        export_dir = tmp / "saved_model"
        module = tf.Module()
        module.f = self.traced("static")
        try:
            expected = [t.numpy() for t in _as_list(module.f(*self.args))]
            tf.saved_model.save(module, str(export_dir))
        except _saved_model.ExportError as err:
            assert not export_dir.exists(), "a refused export left a directory behind"
            outcome["saved_model"] = "prototype export refused cleanly, nothing written"
        else:
            np.savez(tmp / "args.npz", *[a.numpy() for a in self.args])
            np.savez(tmp / "expected.npz", *expected)
            job["saved_model"] = str(export_dir)
        if job["op"]:
            for index, (args, kwargs) in enumerate(self.bad_sets):
                # Array-valued keyword arguments travel in the .npz with the args.
                arrays = {k: np.asarray(v) for k, v in kwargs.items() if isinstance(v, (np.ndarray, tf.Tensor))}
                plain = {k: v for k, v in kwargs.items() if k not in arrays}
                file = tmp / f"bad{index}.npz"
                np.savez(file, *[np.asarray(a) for a in args], **{f"kw_{k}": v for k, v in arrays.items()})
                job["bad"].append({"file": str(file), "args": len(args), "kwargs": plain, "arrays": sorted(arrays)})
        if job["saved_model"] is None and not job["bad"]:
            return outcome
        result = _run_fresh(job, tmp)
        if job["saved_model"] is not None:
            assert result.get("saved_model") == "identical", f"fresh process: {result.get('saved_model')}"
            outcome["saved_model"] = f"loaded and run in a fresh process importing {['tfkit', *self.imports]}"
        if job["bad"]:
            problems = [p for p in result["bad"] if p != "InvalidArgumentError"]
            assert not problems, f"bad inputs did not raise InvalidArgumentError: {problems}"
            outcome["bad_inputs"] = f"{len(job['bad'])} bad argument sets, eager and graph: InvalidArgumentError"
        return outcome


_FRESH_SCRIPT = r"""
import importlib, json, sys
import numpy as np, tensorflow as tf
import tfkit
job = json.loads(open(sys.argv[1]).read())
for name in job["imports"]:
    importlib.import_module(name)
out = {"bad": []}
if job["saved_model"]:
    loaded = tf.saved_model.load(job["saved_model"])
    args = list(np.load(sys.argv[2] + "/args.npz").values())
    expected = list(np.load(sys.argv[2] + "/expected.npz").values())
    got = loaded.f(*args)
    got = [t.numpy() for t in (got if isinstance(got, (list, tuple)) else [got])]
    same = len(got) == len(expected) and all(
        g.dtype == e.dtype and g.shape == e.shape and np.array_equal(g, e, equal_nan=True) for g, e in zip(got, expected))
    out["saved_model"] = "identical" if same else f"outputs differ: {got} vs {expected}"
if job["bad"]:
    module, _, attr = job["op"].rpartition(":")
    op = importlib.import_module(module)
    for part in attr.split("."):
        op = getattr(op, part)
    for case in job["bad"]:
        data = np.load(case["file"])
        args = [data[f"arr_{i}"] for i in range(case["args"])]
        kwargs = {**case["kwargs"], **{name: data["kw_" + name] for name in case["arrays"]}}
        for mode in ("eager", "graph"):
            call = (lambda *a: op(*a, **kwargs))
            try:
                (tf.function(call) if mode == "graph" else call)(*args)
                out["bad"].append(f"{mode}: no error")
            except tf.errors.InvalidArgumentError:
                out["bad"].append("InvalidArgumentError")
            except Exception as err:
                out["bad"].append(f"{mode}: {type(err).__name__}: {str(err)[:200]}")
print("OPCHECK " + json.dumps(out))
"""


def _run_fresh(job: dict, tmp: Path) -> dict:
    (tmp / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_SCRIPT, str(tmp / "job.json"), str(tmp)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    marker = [line for line in result.stdout.splitlines() if line.startswith("OPCHECK ")]
    assert result.returncode == 0 and marker, (
        f"the fresh process exited with {result.returncode} (a crash is a failure):\n{result.stderr[-2000:]}"
    )
    return json.loads(marker[-1][len("OPCHECK ") :])


def _import_path(op) -> str | None:
    """"module:attr" under which `op` can be imported, or None."""
    module_name = getattr(op, "__module__", None)
    if not module_name or module_name == "__main__":
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    for attr, value in vars(module).items():
        if value is op:
            return f"{module_name}:{attr}"
    return None


def _defining_modules(op) -> list[str]:
    path = _import_path(op)
    return [path.split(":")[0]] if path else []


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _to_numpy64(t) -> np.ndarray:
    return tf.cast(t, tf.float64).numpy() if t.dtype.is_floating else np.asarray(t)


def _close(got, want, rtol, atol) -> np.ndarray:
    return np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


def _random_like(t: tf.Tensor, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=t.shape).astype(np.float64)


def _weighted_sum(outputs, weights) -> tf.Tensor:
    """sum(output * weight) over the float outputs, in float64."""
    total = tf.constant(0.0, tf.float64)
    for out, weight in zip(_as_list(outputs), weights, strict=True):
        if out.dtype.is_floating:
            total += tf.reduce_sum(tf.cast(out, tf.float64) * weight)
    return total
