"""`opcheck`: one call that checks an op the way tfkit checks its own.

    report = tfkit.testing.opcheck(tfkit.ops.layer_norm, [x, gamma, beta], {"epsilon": 1e-3})
    print(report)

Each sub-check is a small function with an explicit result: passed (with
what it checked), failed (with the numbers, or the exception the op raised)
or skipped (with the reason it could not run). Only a sub-check's own rule
decides a skip: an exception from the op is a failure unless the rule below
names it a legitimate refusal.

- static_shapes: traced with static shapes, unknown dimensions and unknown
  rank, the outputs' static shapes and dtypes agree with the eager results
  and are as specific as the inputs allow. An op may refuse unknown rank,
  but only cleanly: a ValueError or InvalidArgumentError raised by the op's
  own code (not inside TensorFlow) whose message mentions the rank; the
  detail then says "unknown rank refused: <message>". Anything else (a
  TypeError or AttributeError from a None dimension, TensorFlow's own
  "unknown rank" errors from using an unknown shape) fails.
- eager_vs_graph: eager, tf.function and tf.function with unknown dimensions
  give the same results.
- reference: the op against its reference (given, or the Op's own reference
  or prototype), with dtype-aware tolerances; skipped when there is none.
- gradients: numeric (finite-difference) vs analytic (the full Jacobian for
  small inputs, random directional derivatives for large ones) in float64,
  and the op's gradients against the reference's. A mismatch says, as the
  reference check's does, how many elements differ, the largest error and
  the tolerance. An op that refuses float64 (a dtype error naming
  float64) is checked in its inputs' dtype at that dtype's gradient
  tolerance, and the detail says so; any other error in float64 fails.
  Skipped only when the op defines no gradient: TensorFlow's gradient
  registry has no entry for an op it uses, the tape gives None for a float
  input, or a prototype has no grad= (PrototypeGradientError). Any other
  exception from a gradient, a KeyError or IndexError inside it included,
  fails and is named.
- xla: the op under jit_compile=True with the default backend matches its
  eager results. An op without a reference (an Op that declares none, or a
  plain callable) may instead be refused cleanly, which means raising
  tfkit.backend.XLAUnsupportedError (the detail names its kind,
  XLACompiledBackendError or XLAPrototypeError); any other error fails,
  whatever its message says.
- saved_model: a tf.Module using the op, saved and loaded in a fresh process
  that imports only tfkit and the modules named, gives identical outputs (a
  prototype's export must be refused, leaving nothing behind); where that
  process can't import a module, the failure says what to pass as imports=;
- bad_inputs: each given bad argument set raises InvalidArgumentError,
  eagerly and in a graph, in a fresh process that must not crash (in the
  graph, a shape function's refusal may be the ValueError TensorFlow raises
  while building a graph, with the eager error's message);
- threads: eight threads calling the op at once give the serial results.

Tolerances (against a reference, numeric gradients) come from the one table
in `tfkit.tolerances`.
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
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfkit import saved_model as _saved_model
from tfkit._shapes import shape_string
from tfkit.backend import XLAUnsupportedError
from tfkit.declare import Op
from tfkit.prototype import PrototypeError, PrototypeGradientError
from tfkit.tolerances import TOLERANCES, tolerance

__all__ = ["CHECKS", "TOLERANCES", "CheckResult", "OpCheckReport", "opcheck"]

CHECKS = ("static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "saved_model", "bad_inputs", "threads")

_SMALL_JACOBIAN = 2048  # inputs up to this many elements get a full numeric Jacobian
_UNIT_ROUNDOFF = {tf.float64: 2.0**-53, tf.float32: 2.0**-24, tf.float16: 2.0**-11, tf.bfloat16: 2.0**-8}
_TENSORFLOW_DIR = os.path.dirname(os.path.abspath(tf.__file__)) + os.sep
# TensorFlow's LookupError messages for an op type without a registered
# gradient (the eager tape's, then graph-mode gradients').
_UNREGISTERED_GRADIENT = ("gradient registry has no entry for", "No gradient defined for operation")
# What an op that can't run in float64 may raise (naming float64 or double).
_DTYPE_ERRORS = (
    TypeError,
    ValueError,
    tf.errors.InvalidArgumentError,
    tf.errors.NotFoundError,
    tf.errors.UnimplementedError,
)


class _NoGradientError(Exception):
    """The tape gave None for a float input: the op defines no gradient for it."""


@dataclasses.dataclass
class CheckResult:
    status: str  # "passed", "failed" or "skipped"
    detail: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class _Result:
    """What a sub-check function returns (opcheck adds the time)."""

    status: str
    detail: str


def _passed(detail: str = "") -> _Result:
    return _Result("passed", detail)


def _failed(detail: str) -> _Result:
    return _Result("failed", detail)


def _skipped(reason: str) -> _Result:
    return _Result("skipped", reason)


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
    raise_on_failure: bool = True,
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
        by dtype, the `reference` column of `tfkit.tolerances.TOLERANCES`).
      bad_inputs: Argument sets `(args, kwargs)` that must each raise
        InvalidArgumentError: `op(*args, **kwargs)`, the kwargs complete (not
        merged with `kwargs`); args are NumPy-convertible, kwargs JSON values
        or arrays. Skipped unless the op can be imported by name.
      imports: Modules the fresh process imports besides tfkit (default: the
        module that defines the op, where it can be imported).
      raise_on_failure: Whether a failed sub-check raises (the default);
        False returns the report with its failures instead.

    Returns:
      An `OpCheckReport` (its str is a table with each sub-check's time).

    Raises:
      AssertionError: listing every failed sub-check (its `report`
        attribute holds the report).
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
    if report.failed and raise_on_failure:
        lines = [f"{name}: {r.detail}" for name, r in report.failed.items()]
        error = AssertionError(f"opcheck {case.name} failed {len(lines)} check(s):\n" + "\n".join(lines))
        error.report = report
        raise error
    return report


def _run_check(case: _Case, name: str) -> CheckResult:
    start = time.perf_counter()
    try:
        result = _SUB_CHECKS[name](case)
    except Exception as err:  # the op (or what it called) raised where no rule expects it
        result = _failed(_error_text(err))
    return CheckResult(result.status, result.detail, time.perf_counter() - start)


# The sub-checks -------------------------------------------------------------


def _check_static_shapes(case: _Case) -> _Result:
    eager = case.eager()
    notes = []
    for shape in ("static", "unknown_dims", "unknown_rank"):
        try:
            outputs = case.traced(shape).get_concrete_function().structured_outputs
        except Exception as err:
            if shape != "unknown_rank":
                return _failed(f"traced with {shape.replace('_', ' ')} inputs, the op raised {_error_text(err)}")
            refusal = _clean_rank_refusal(err)
            if refusal is None:
                return _failed(
                    f"traced with unknown rank inputs, the op raised {_error_text(err)} (a clean refusal is a "
                    "ValueError or InvalidArgumentError from the op's own code that mentions the rank)"
                )
            notes.append(f"unknown rank refused: {refusal}")
            continue
        for index, (traced, value) in enumerate(zip(_as_list(outputs), eager, strict=True)):
            where = f"{shape}: output {index}"
            if traced.dtype != value.dtype:
                return _failed(f"{where} dtype {traced.dtype.name} vs eager {value.dtype.name}")
            if not traced.shape.is_compatible_with(value.shape):
                return _failed(f"{where} shape {shape_string(traced)} vs {shape_string(value)}")
            if shape == "static" and traced.shape != value.shape:
                return _failed(f"{where}: static inputs gave shape {shape_string(traced)}")
            if shape == "unknown_dims" and traced.shape.rank is None:
                return _failed(f"{where}: known input ranks gave an unknown rank")
    return _passed("; ".join(notes))


def _check_eager_vs_graph(case: _Case) -> _Result:
    eager = case.eager()
    for shape in ("static", "unknown_dims"):
        problem = case.mismatch(_as_list(case.traced(shape)(*case.args)), eager, f"tf.function ({shape})")
        if problem:
            return _failed(problem)
    return _passed()


def _check_reference(case: _Case) -> _Result:
    case.eager()  # an op that raises fails, with or without a reference
    fn, what = case.reference_impl()
    if fn is None:
        return _skipped(what)
    want = _as_list(fn(*case.args, **case.kwargs))
    problem = case.mismatch(case.eager(), want, f"against {what}")
    return _failed(problem) if problem else _passed(f"against {what}")


def _check_gradients(case: _Case) -> _Result:
    case.eager()  # an op that raises fails (and the forward's errors are not the gradient's)
    positions = [i for i, a in enumerate(case.args) if a.dtype.is_floating]
    if not positions:
        return _skipped("no float input to differentiate")
    try:
        analytic = case.tape_gradients(case.call, positions)
    except Exception as err:
        missing = _no_gradient(err)
        if missing is None:
            return _failed(f"differentiating the op raised {_error_text(err)}")
        return _skipped(f"the op defines no gradient ({missing})")
    numeric = _numeric_gradients(case, positions)
    if numeric.status != "passed":
        return numeric
    notes = [numeric.detail]
    fn, what = case.reference_impl()
    if fn is None:
        notes.append(what)
        return _passed("; ".join(notes))
    try:
        want = case.tape_gradients(lambda *a: _as_list(fn(*a, **case.kwargs)), positions)
    except Exception as err:
        if _no_gradient(err) is None:
            return _failed(f"the gradient of {what} raised {_error_text(err)}")
        notes.append(f"{what} defines no gradient to compare with")
    else:
        problem = case.mismatch(analytic, want, f"gradients against {what}'s")
        if problem:
            return _failed(problem)
        notes.append(f"gradients match {what}'s")
    return _passed("; ".join(notes))


def _numeric_gradients(case: _Case, positions: list[int]) -> _Result:
    """Numeric vs analytic gradients: in float64 where the op runs in float64,
    else (where it refuses float64's dtype) in the inputs' dtype."""
    args = [tf.cast(a, tf.float64) if a.dtype.is_floating else a for a in case.args]
    dtype = tf.float64
    try:
        case.call(*args)
    except Exception as err:
        if not _refuses_float64(err):
            return _failed(f"in float64 the op raised {_error_text(err)}, which is not a dtype refusal")
        args = list(case.args)
        dtype = max((case.args[i].dtype for i in positions), key=lambda d: tolerance(d).gradient)
        refusal = _error_text(err, limit=200)
    rtol, step = tolerance(dtype).gradient, tolerance(dtype).gradient_step
    if dtype == tf.float64:
        precision = "(float64)"
    else:
        precision = f"({dtype.name} at rtol {rtol:g}, as the op refuses float64: {refusal})"
    weights = [tf.constant(_random_like(t, seed=11 + i), tf.float64) for i, t in enumerate(case.eager())]

    def outputs(*free):
        full = list(args)
        for i, value in zip(positions, free, strict=True):
            full[i] = value
        return case.call(*full)

    free = [args[i] for i in positions]
    if sum(int(np.prod(t.shape)) for t in free) <= _SMALL_JACOBIAN:
        problem = _jacobian_problem(lambda *f: _weighted_sum(outputs(*f), weights), free, positions, rtol, step)
        what = "numeric vs analytic Jacobian"
    else:
        problem = _directional_problem(outputs, weights, free, positions, rtol, step)
        what = "numeric vs analytic, 3 random directions"
    if problem:
        return _failed(f"{problem} {precision}")
    return _passed(f"{what} {precision}")


def _gradient_atol(rtol: float, scale_name: str, scale: float) -> tuple[float, str]:
    """The gradient checks' absolute tolerance, rtol x max(1, the size of the
    numeric derivatives), and how it is made."""
    return rtol * max(1.0, scale), f"atol = the gradient rtol {rtol:.3g} x max(1, {scale_name} {scale:.3g})"


def _jacobian_problem(scalar, free, positions, rtol, step) -> str | None:
    """The full numeric Jacobian of `scalar` against the tape's, each input's
    error relative to max(1, its largest numeric derivative)."""
    theoretical, numerical = tf.test.compute_gradient(scalar, free, delta=step)
    for position, x, t, n in zip(positions, free, theoretical, numerical, strict=True):
        atol, made = _gradient_atol(rtol, "the largest numeric derivative", float(np.abs(n).max(initial=0.0)))
        shape = tuple(x.shape)
        difference = _difference(t.reshape(shape), n.reshape(shape), 0.0, atol, equal_nan=False)
        if difference:
            return f"numeric (finite-difference) vs analytic Jacobian of input {position} {difference}; {made}"
    return None


def _directional_problem(outputs, weights, free, positions, rtol, step) -> str | None:
    """Central differences along three random directions against the tape's
    gradient, applied to the step actually taken (x +- step * direction as
    rounded to the inputs' dtype). Allowed: rtol relative to max(1, |the
    numeric derivative|), plus three times the spread that rounding the
    outputs to their dtype gives the difference (negligible in float64 and
    float32; what keeps half-precision differences meaningful)."""
    with tf.GradientTape() as tape:
        tape.watch(free)
        value = _weighted_sum(outputs(*free), weights)
    grads = tape.gradient(value, free)
    if any(g is None for g in grads):
        return "the tape gave no gradient for an input"
    grads = [tf.cast(tf.convert_to_tensor(g), tf.float64) for g in grads]
    for seed in range(3):
        direction = [tf.constant(_random_like(t, seed=100 + seed), t.dtype) for t in free]
        plus_x = [t + step * d for t, d in zip(free, direction, strict=True)]
        minus_x = [t - step * d for t, d in zip(free, direction, strict=True)]
        plus, minus = outputs(*plus_x), outputs(*minus_x)
        numeric = float(_weighted_sum(plus, weights) - _weighted_sum(minus, weights)) / (2 * step)
        taken = [tf.cast(p, tf.float64) - tf.cast(m, tf.float64) for p, m in zip(plus_x, minus_x, strict=True)]
        analytic = float(sum(tf.reduce_sum(g * t) for g, t in zip(grads, taken, strict=True))) / (2 * step)
        noise = 3 * _rounding_spread(plus, minus, weights) / (2 * step)
        atol, made = _gradient_atol(rtol, "|the numeric derivative|", abs(numeric))
        difference = _difference(np.array(analytic), np.array(numeric), 0.0, atol + noise, equal_nan=False)
        if difference:
            rounding = f" + rounding {noise:.3g}" if noise >= 1e-6 else ""
            return (
                f"numeric (finite-difference) vs analytic derivative of inputs {positions} along random direction "
                f"{seed} ({numeric:.6g} vs {analytic:.6g}) {difference}; {made}{rounding}"
            )
    return None


def _rounding_spread(plus, minus, weights) -> float:
    """The standard deviation that rounding the outputs to their dtype gives
    sum(weight * (plus - minus)), the rounding errors taken as independent."""
    total = 0.0
    for p, m, w in zip(_as_list(plus), _as_list(minus), weights, strict=True):
        if p.dtype.is_floating:
            unit = _UNIT_ROUNDOFF.get(p.dtype, 0.0)
            size = (tf.abs(tf.cast(p, tf.float64)) + tf.abs(tf.cast(m, tf.float64))) * tf.abs(w) * unit
            total += float(tf.reduce_sum(tf.square(size)))
    return total**0.5


def _check_xla(case: _Case) -> _Result:
    try:
        got = _as_list(case.traced("static", jit_compile=True)(*case.args))
    except XLAUnsupportedError as err:
        if case.declared is not None and "reference" in case.declared.implementations:
            return _failed(f"under jit_compile=True the op raised {_error_text(err)} though it declares a reference")
        return _passed(f"refused cleanly: {type(_unwrap_autograph(err)).__name__}")
    except Exception as err:
        return _failed(
            f"under jit_compile=True the op raised {_error_text(err)} (only "
            "tfkit.backend.XLAUnsupportedError is a clean refusal)"
        )
    problem = case.mismatch(got, case.eager(), "under jit_compile=True")
    return _failed(problem) if problem else _passed()


def _check_saved_model(case: _Case) -> _Result:
    return case.fresh_process()["saved_model"]


def _check_bad_inputs(case: _Case) -> _Result:
    if not case.bad_sets:
        return _skipped("no bad_inputs given")
    if _import_path(case.op) is None:
        return _skipped("the op can't be imported by name from a module, so it can't run in a fresh process")
    return case.fresh_process()["bad_inputs"]


def _check_threads(case: _Case) -> _Result:
    serial = [case.call(*case.args) for _ in range(2)]
    problem = case.mismatch(serial[1], serial[0], "two serial calls", exact=True)
    if problem:
        return _failed(problem)
    results, errors = [None] * 8, []
    barrier = threading.Barrier(8)

    def worker(index):
        try:
            barrier.wait()
            for _ in range(4):
                results[index] = case.call(*case.args)
        except Exception as err:
            errors.append(err)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        return _failed(f"a thread raised {_error_text(errors[0])}")
    for index, result in enumerate(results):
        problem = case.mismatch(result, serial[0], f"thread {index}", exact=True)
        if problem:
            return _failed(problem)
    return _passed("8 threads x 4 calls")


_SUB_CHECKS: dict[str, Callable[[_Case], _Result]] = {
    "static_shapes": _check_static_shapes,
    "eager_vs_graph": _check_eager_vs_graph,
    "reference": _check_reference,
    "gradients": _check_gradients,
    "xla": _check_xla,
    "saved_model": _check_saved_model,
    "bad_inputs": _check_bad_inputs,
    "threads": _check_threads,
}
assert tuple(_SUB_CHECKS) == CHECKS


# The rules for legitimate refusals ----------------------------------------


def _no_gradient(err: Exception) -> str | None:
    """Why `err` means "the op defines no gradient", or None when it doesn't
    (an error inside a gradient function, a KeyError among them)."""
    if isinstance(err, (_NoGradientError, PrototypeGradientError)):
        return str(err)
    if type(err) is LookupError and str(err).startswith(_UNREGISTERED_GRADIENT):
        return str(err)
    return None


def _refuses_float64(err: Exception) -> bool:
    """Whether `err` is the op refusing float64 inputs: a dtype error
    (TypeError, ValueError, InvalidArgumentError, NotFoundError for a missing
    kernel, UnimplementedError; for a prototype, what its function raised)
    whose message names float64 (or double)."""
    kinds = [err]
    if isinstance(err, PrototypeError) and err.__cause__ is not None:
        kinds.append(err.__cause__)  # the exception the prototype's function raised
    message = str(err).lower()
    return any(isinstance(e, _DTYPE_ERRORS) for e in kinds) and ("float64" in message or "double" in message)


def _clean_rank_refusal(err: Exception) -> str | None:
    """The message of a clean refusal of unknown-rank inputs, or None.

    Clean: a ValueError or InvalidArgumentError raised by the op's own code,
    not from inside TensorFlow, whose message mentions the rank. A TypeError
    or AttributeError from a None dimension, or TensorFlow's own ValueError
    for using an unknown shape ("Cannot iterate over a shape with unknown
    rank."), is not.
    """
    original = _unwrap_autograph(err)
    if not isinstance(original, (ValueError, tf.errors.InvalidArgumentError)):
        return None
    frames = traceback.extract_tb(original.__traceback__)
    if not frames or os.path.abspath(frames[-1].filename).startswith(_TENSORFLOW_DIR):
        return None
    message = _message(original)
    return message if "rank" in message.lower() else None


def _unwrap_autograph(err: Exception) -> Exception:
    """The exception the op raised, where tf.function's autograph re-raised it
    as a new one (same type, "in user code:" message, original as context)."""
    while True:
        metadata = getattr(err, "ag_error_metadata", None)
        inner = err.__context__
        if metadata is None or inner is None or getattr(inner, "ag_error_metadata", None) is not metadata:
            return err
        err = inner


def _message(err: Exception) -> str:
    """The exception's message on one line, without the list of where the op
    was created that TensorFlow's errors append."""
    message = err.message if isinstance(err, tf.errors.OpError) else str(err)
    message = message.split("The op is created at:")[0]
    return " ".join(message.split())


def _error_text(err: Exception, limit: int = 600) -> str:
    """`Type: message` of the exception the op raised, on one line."""
    original = _unwrap_autograph(err)
    text = f"{type(original).__name__}: {_message(original)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# One op and its arguments ---------------------------------------------------


class _Case:
    """One op and its arguments, and what the sub-checks share."""

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
        self._eager: list[tf.Tensor] | None = None
        self._fresh: dict[str, _Result] | None = None

    def call(self, *args, **extra):
        return _as_list(self.op(*args, **self.kwargs, **extra))

    def eager(self) -> list[tf.Tensor]:
        if self._eager is None:
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
        rtol, atol = tolerance(dtype).reference
        return (self.rtol if self.rtol is not None else rtol), (self.atol if self.atol is not None else atol)

    def mismatch(self, got, want, what: str, exact: bool = False) -> str | None:
        """Where `got` differs from `want`, with the numbers; None if it doesn't."""
        if len(got) != len(want):
            return f"{what}: {len(got)} outputs vs {len(want)}"
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            if g.dtype != w.dtype:
                return f"{what}: output {index} dtype {g.dtype.name} vs {w.dtype.name}"
            g64, w64 = _to_numpy64(g), _to_numpy64(w)
            if g64.shape != w64.shape:
                return f"{what}: output {index} shape {shape_string(g64)} vs {shape_string(w64)}"
            rtol, atol = (0.0, 0.0) if exact else self.tolerance(g.dtype)
            difference = _difference(g64, w64, rtol, atol)
            if difference:
                return f"{what}: output {index} {difference}"
        return None

    def reference_impl(self) -> tuple[Callable[..., Any] | None, str]:
        """The implementation to compare with and how to name it, or None
        and the reason there is none."""
        if self.reference_fn is not None:
            return self.reference_fn, "the given reference"
        impls = self.declared.implementations if self.declared else {}
        chosen = self.declared.choose() if self.declared else None
        for kind in ("reference", "prototype"):
            if kind in impls and kind != chosen:
                return (lambda *a, _kind=kind, **k: self.op(*a, backend=_kind, **k)), f"its {kind}"
        if self.declared and len(impls) == 1:
            return None, f"the op has only its {chosen} implementation: no reference to compare with"
        return None, "no reference: pass reference= or declare one (@op.reference)"

    def tape_gradients(self, fn, positions) -> list[tf.Tensor]:
        """d(weighted sum of fn's outputs)/d(the inputs at positions).

        Raises:
          _NoGradientError: the tape gave None for one of them.
        """
        args = list(self.args)
        weights = [tf.constant(_random_like(t, seed=7 + i)) for i, t in enumerate(self.eager())]
        with tf.GradientTape() as tape:
            for i in positions:
                tape.watch(args[i])
            loss = _weighted_sum(fn(*args), weights)
        grads = tape.gradient(loss, [args[i] for i in positions])
        missing = [i for i, g in zip(positions, grads, strict=True) if g is None]
        if missing:
            raise _NoGradientError(f"the tape gave no gradient for float input(s) {missing}")
        return [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices (a gather's gradient) as dense

    # the fresh process (saved_model and bad_inputs share one) ------------

    def fresh_process(self) -> dict[str, _Result]:
        if self._fresh is None:
            with tempfile.TemporaryDirectory(prefix="tfkit-opcheck-") as tmp:
                self._fresh = self.run_fresh_process(Path(tmp))
        return self._fresh

    def run_fresh_process(self, tmp: Path) -> dict[str, _Result]:
        outcome = {"saved_model": _passed(), "bad_inputs": _passed()}
        job = {"imports": self.imports, "saved_model": None, "op": _import_path(self.op), "bad": []}
        job["shape_function_refusal"] = _SHAPE_FUNCTION_REFUSAL
        export_dir = tmp / "saved_model"
        module = tf.Module()
        module.f = self.traced("static")
        try:
            expected = [t.numpy() for t in _as_list(module.f(*self.args))]
            tf.saved_model.save(module, str(export_dir))
        except _saved_model.ExportError:
            if export_dir.exists():
                outcome["saved_model"] = _failed("a refused export left a directory behind")
            else:
                outcome["saved_model"] = _passed("prototype export refused cleanly, nothing written")
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
        result, failure = _run_fresh(job, tmp)
        if failure:
            return {"saved_model": _failed(failure), "bad_inputs": _failed(failure)}
        if job["saved_model"] is not None:
            if result.get("saved_model") == "identical":
                modules = ["tfkit", *self.imports]
                outcome["saved_model"] = _passed(f"loaded and run in a fresh process importing {modules}")
            else:
                outcome["saved_model"] = _failed(f"fresh process: {result.get('saved_model')}")
        if job["bad"]:
            problems = [p for p in result["bad"] if p not in ("InvalidArgumentError", _SHAPE_FUNCTION_REFUSAL)]
            if problems:
                outcome["bad_inputs"] = _failed(f"bad inputs did not raise InvalidArgumentError: {problems}")
            else:
                sets = len(job["bad"])
                detail = f"{sets} bad argument sets, eager and graph: InvalidArgumentError"
                by_shape_function = result["bad"].count(_SHAPE_FUNCTION_REFUSAL)
                if by_shape_function:
                    detail += (
                        f" ({by_shape_function} in the graph as TensorFlow reports a shape function's refusal: "
                        "ValueError, with the eager message)"
                    )
                outcome["bad_inputs"] = _passed(detail)
        return outcome


# What the fresh process records for a bad argument set that a shape function
# refused in the graph (see _FRESH_SCRIPT).
_SHAPE_FUNCTION_REFUSAL = "shape function"

_FRESH_SCRIPT = r"""
import importlib, json, sys
import numpy as np, tensorflow as tf
import tfkit
job = json.loads(open(sys.argv[1]).read())
op_module = job["op"].rpartition(":")[0] if job["bad"] else None
for name in [*job["imports"], *([op_module] if op_module else [])]:
    try:
        importlib.import_module(name)
    except ImportError as err:
        print("OPCHECK " + json.dumps({"unimportable": name, "error": f"{type(err).__name__}: {err}"}))
        sys.exit(0)
out = {"bad": []}

# Whether a graph's ValueError is a shape function's InvalidArgument (as
# TensorFlow raises it while building a graph) with the eager message.
def refused_by_shape_function(err, eager_message):
    if eager_message is None or " for '{{node " not in str(err):
        return False
    core = eager_message.split(" [Op:")[0]
    core = core.split("}} ", 1)[-1] if core.startswith("{{function_node ") else core
    return bool(core.strip()) and core in str(err).split(" for '{{node ")[0]

if job["saved_model"]:
    loaded = tf.saved_model.load(job["saved_model"])
    args = list(np.load(sys.argv[2] + "/args.npz").values())
    expected = list(np.load(sys.argv[2] + "/expected.npz").values())
    got = loaded.f(*args)
    got = [t.numpy() for t in (got if isinstance(got, (list, tuple)) else [got])]
    same = len(got) == len(expected) and all(
        g.dtype == e.dtype and g.shape == e.shape and np.array_equal(g, e, equal_nan=True)
        for g, e in zip(got, expected))
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
        eager_message = None
        for mode in ("eager", "graph"):
            call = (lambda *a: op(*a, **kwargs))
            try:
                (tf.function(call) if mode == "graph" else call)(*args)
                out["bad"].append(f"{mode}: no error")
            except tf.errors.InvalidArgumentError as err:
                out["bad"].append("InvalidArgumentError")
                eager_message = err.message if mode == "eager" else eager_message
            except ValueError as err:
                if mode == "graph" and refused_by_shape_function(err, eager_message):
                    out["bad"].append(job["shape_function_refusal"])
                else:
                    out["bad"].append(f"{mode}: ValueError: {str(err)[:200]}")
            except Exception as err:
                out["bad"].append(f"{mode}: {type(err).__name__}: {str(err)[:200]}")
print("OPCHECK " + json.dumps(out))
"""


def _run_fresh(job: dict, tmp: Path) -> tuple[dict, str | None]:
    """Runs the job in a fresh process: its results, or why it failed (a
    crash, or a module it could not import)."""
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
    if result.returncode != 0 or not marker:
        return {}, f"the fresh process exited with {result.returncode} (a crash is a failure):\n{result.stderr[-2000:]}"
    result = json.loads(marker[-1][len("OPCHECK ") :])
    if "unimportable" in result:
        return {}, _unimportable(result["unimportable"], result["error"])
    return result, None


def _unimportable(module: str, error: str) -> str:
    """Why the fresh process failed where it could not import `module`, and what to do."""
    return (
        f"the fresh process could not import {module!r} ({error}): pass imports=[a module that loads the "
        "library], the modules the fresh process imports besides tfkit so that the op is registered there "
        "(by default the op's own module, which for an op from tf.load_op_library or tfkit.build.load_inline "
        "is named by a hash and exists only in the process that loaded the library)"
    )


def _import_path(op) -> str | None:
    """The "module:attr" under which `op` can be imported, or None."""
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
    """The op's module, to import in the fresh process; none for a function
    of a loaded op library (tf.load_op_library names its module by a hash:
    it exists in a process only once the library is loaded)."""
    path = _import_path(op)
    if not path:
        return []
    module = path.split(":")[0]
    return [] if getattr(sys.modules.get(module), "_IS_TENSORFLOW_PLUGIN", False) else [module]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _to_numpy64(t) -> np.ndarray:
    return tf.cast(t, tf.float64).numpy() if t.dtype.is_floating else np.asarray(t)


def _difference(got: np.ndarray, want: np.ndarray, rtol: float, atol: float, equal_nan: bool = True) -> str | None:
    """How `got` differs from `want` beyond |got - want| <= atol + rtol * |want|,
    with the numbers: "differs at 3 of 15 elements (max abs error 0.2 at [1, 4],
    rtol 0.001, atol 0.001)"; None where it doesn't."""
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=equal_nan)
    if not bad.any():
        return None
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf (not a difference)
        errors = np.where(bad, np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)), 0.0)
    if np.isnan(errors).any():
        error = "nan"
    else:
        worst = np.unravel_index(np.argmax(errors), errors.shape)
        error = f"{errors[worst]:.3g}" + (f" at {list(map(int, worst))}" if errors.ndim else "")
    tolerance = f"rtol {rtol:.3g}, atol {atol:.3g}"
    return f"differs at {int(bad.sum())} of {bad.size} elements (max abs error {error}, {tolerance})"


def _random_like(t: tf.Tensor, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=t.shape).astype(np.float64)


def _weighted_sum(outputs, weights) -> tf.Tensor:
    """sum(output * weight) over the float outputs, in float64."""
    total = tf.constant(0.0, tf.float64)
    for out, weight in zip(_as_list(outputs), weights, strict=True):
        if out.dtype.is_floating:
            total += tf.reduce_sum(tf.cast(out, tf.float64) * weight)
    return total
