"""The property every fuzz case holds, and running a case.

A raw op called on a case (eagerly, in a tf.function with the inputs'
shapes, or in one with every dimension unknown) either raises a clean
error that names one of the arguments the case got wrong, or returns what
the reference returns. Clean errors: InvalidArgumentError, or the case's
honest alternative (FailedPrecondition for a handle naming no variable,
ResourceExhausted for an output that can't be allocated); where
TensorFlow's Python layer checks an input before any kernel runs (the op
definition's dtype lists; a shape function, whose refusal tf.function
raises as a ValueError while tracing), a TypeError or ValueError naming the
argument. A case traced only (sizes no tensor can have) is traced without
a crash, or refused that way. Never a crash, never another error, never a
different answer.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import resource
import sys
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from tests.conftest import error_message as message
from tests.fuzz import cases, repro
from tests.fuzz import specs as table
from tests.fuzz.cases import Case
from tests.fuzz.schema import Where, instantiate
from tfkit import _loader, build
from tfkit.tolerances import tolerance


class FuzzFailure(AssertionError):
    """A case broke the property (each subclass one way)."""


class RefusedValid(FuzzFailure):
    """A valid input raised."""


class AcceptedInvalid(FuzzFailure):
    """An invalid input returned a result."""


class WrongError(FuzzFailure):
    """An invalid input raised an error of another type than the honest ones."""


class UnnamedError(FuzzFailure):
    """The error names none of the arguments the case got wrong."""


class WrongResult(FuzzFailure):
    """A valid input returned something other than the reference's result."""


class ReferenceRaised(FuzzFailure):
    """The op returned a result where its reference raises: no answer to compare with."""


# TensorFlow's own refusals of an input, before any kernel of the op runs.
_INPUT_INDEX = re.compile(r"input #(\d+)\(zero-based\)")  # eager dtype checks
_EMPTY_HANDLE = "Empty resource handle"  # the eager runtime's check of a [0] handle


def named(case: Case, err: BaseException) -> set[str]:
    """The op's argument and attribute names the error's message names."""
    text = message(err)
    found = {n for n in case.spec.names if re.search(rf"(?<![\w>/]){re.escape(n)}(?!\w)", text)}
    for index in _INPUT_INDEX.findall(text):
        if int(index) < len(case.spec.inputs):
            found.add(case.spec.inputs[int(index)].name)
    if _EMPTY_HANDLE in text:
        found |= {a.name for a in case.spec.inputs if a.role == "handle"}
    return found


# Running a case -------------------------------------------------------------


def _tensor(values, shape, dtype: tf.DType) -> tf.Tensor:
    """A tensor of `dtype` from host values (None: zeros, e.g. no element)."""
    if values is None:
        return tf.zeros(shape, dtype)
    values = np.asarray(values)
    if dtype.is_floating or dtype.is_complex or values.dtype.kind == "i":
        return tf.cast(tf.constant(values), dtype)
    if dtype == tf.bool:
        return tf.constant(values > 0)
    return tf.cast(tf.constant(np.clip(np.nan_to_num(np.round(values)), 0 if dtype.is_unsigned else -100, 100)), dtype)


class Inputs:
    """A case's inputs, made eagerly: `tensors` for the op (a handle for a
    resource input), `reference` for the reference (its variable), and
    `tables` the values of the handles' variables."""

    def __init__(self, case: Case):
        self.case = case
        self.tensors: dict[str, tf.Tensor] = {}
        self.reference: dict = {}
        self.tables: dict[str, tf.Tensor] = {}
        for arg in case.spec.inputs if case.mode != cases.TRACED else ():
            shape, dtype, values = case.shapes[arg.name], case.dtypes[arg.name], case.values[arg.name]
            if arg.role.startswith("stat:"):
                self.tensors[arg.name] = self._statistic(arg, shape, dtype)
            elif arg.role == "handle":
                self.tensors[arg.name] = self._handle(arg, _tensor(values, shape, dtype))
            else:
                self.tensors[arg.name] = _tensor(values, shape, dtype)
            self.reference.setdefault(arg.name, self.tensors[arg.name])

    def _statistic(self, arg, shape, dtype) -> tf.Tensor:
        """The forward's row statistic of x where x's shape gives it one."""
        x = self.tensors.get("x")
        if x is None or not x.shape.rank or not x.shape.num_elements() or tuple(x.shape[:-1]) != shape:
            return tf.zeros(shape, dtype)
        if not (x.dtype.is_floating and dtype.is_floating):
            return tf.zeros(shape, dtype)
        return tf.cast(table.STATS[arg.role.split(":", 1)[1]](x, tf.float64), dtype)

    def _handle(self, arg, value: tf.Tensor) -> tf.Tensor:
        kind = self.case.handle
        self.tables[arg.name] = value
        if kind in ("uninitialised", "nameless"):
            name = "" if kind == "nameless" else f"fuzz_never_assigned_{id(self)}"
            return tf.raw_ops.VarHandleOp(dtype=value.dtype, shape=value.shape, shared_name=name)
        if kind == "mutex":
            return tf.raw_ops.MutexV2()
        variable = tf.Variable(value, trainable=False)
        self.reference[arg.name] = variable
        if kind == "empty":
            return tf.gather(tf.reshape(variable.handle, [1]), tf.zeros([0], tf.int32))
        if kind == "two":
            return tf.stack([variable.handle, variable.handle])
        return variable.handle


def _memory_cap_bytes() -> int | None:
    """How much more address space a call may take: 8 GiB above the
    process's own, so that a kernel allocating for a huge size fails
    instead of taking the machine's memory (none under ASan, whose shadow
    memory needs the address space; ASAN_OPTIONS limit allocations there)."""
    maps = Path("/proc/self/maps")
    if not maps.exists() or "libasan" in maps.read_text():
        return None
    status = Path("/proc/self/status").read_text()
    size_kb = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1))
    return size_kb * 1024 + 8 * 2**30


@contextlib.contextmanager
def memory_cap():
    cap = _memory_cap_bytes()
    if cap is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# A case that runs longer than this is a hang (a case takes well under a
# second, also under ASan): the process stops, saying which case it was.
HANG_SECONDS = 120
# Called before the message of a hang is written (conftest.py: pytest stops
# capturing the output, which the process's end would lose).
BEFORE_HANG_MESSAGE: list = []


@contextlib.contextmanager
def watchdog(case: Case, inputs: Inputs):
    def stop():
        for hook in BEFORE_HANG_MESSAGE:
            hook()
        sys.stderr.write(f"\nfuzz: {case!r} ran over {HANG_SECONDS} s. To repeat it:\n{repro.script(case, inputs)}\n")
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(70)

    timer = threading.Timer(HANG_SECONDS, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def case_file() -> Path | None:
    """Where this process writes the case it runs, if FUZZ_CASE_DIR names a
    folder (tools/sanitize.py: a report stops the process, the file stays)."""
    folder = os.environ.get("FUZZ_CASE_DIR")
    return Path(folder) / f"{os.getpid()}.py" if folder else None


def call(case: Case, inputs: Inputs) -> tuple[list | None, BaseException | None, str]:
    """Runs the raw op on the case: (outputs, error, stage "trace" or "run")."""
    path = case_file()
    if path is not None:
        path.write_text(f"# {case!r}\n{repro.script(case, inputs)}\n")
    fn = getattr(_loader.load_library(), build.python_op_name(case.spec.op))
    kwargs = case.kwargs()
    if case.mode == cases.TRACED:
        with tf.device("/CPU:0"), watchdog(case, inputs):
            traced = tf.function(lambda *a: fn(*a, **kwargs), input_signature=cases.signature(case), autograph=False)
            try:
                traced.get_concrete_function()
            except Exception as err:
                return None, err, "trace"
            return [], None, "trace"
    args = [inputs.tensors[arg.name] for arg in case.spec.inputs]
    with tf.device("/CPU:0"), memory_cap(), watchdog(case, inputs):
        if case.mode == "eager":
            try:
                return _as_list(fn(*args, **kwargs)), None, "run"
            except Exception as err:
                return None, err, "run"
        unknown = case.mode == "graph_unknown"
        specs = [tf.TensorSpec([None] * t.shape.rank if unknown else t.shape, t.dtype) for t in args]
        traced = tf.function(lambda *a: fn(*a, **kwargs), input_signature=specs, autograph=False)
        try:
            concrete = traced.get_concrete_function()
        except Exception as err:
            return None, err, "trace"
        try:
            return _as_list(concrete(*args)), None, "run"
        except Exception as err:
            return None, err, "run"


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


# The property ---------------------------------------------------------------


def holds(case: Case, inputs: Inputs) -> str:
    """Checks the property; returns the outcome's kind ("result", or the
    error's type name) or raises a FuzzFailure."""
    outputs, err, stage = call(case, inputs)
    expect = case.expect
    if expect.kind == "traced" and err is None:
        return "traced"
    if expect.kind == "valid":
        if err is not None:
            raise RefusedValid(f"{case.expect.what}: raised {_describe(err)}")
        _same_as_reference(case, inputs, outputs)
        return "result"
    if err is None:
        shapes = [tuple(o.shape) for o in outputs]
        raise AcceptedInvalid(f"{expect.what}: returned outputs of shapes {shapes} instead of an error")
    honest = expect.honest
    if expect.kind == "exhausted":
        honest = (tf.errors.ResourceExhaustedError, tf.errors.InvalidArgumentError)
    python_check = not isinstance(err, tf.errors.OpError) and isinstance(err, (TypeError, ValueError))
    if not (isinstance(err, honest) or (python_check and (stage == "trace" or isinstance(err, TypeError)))):
        raise WrongError(f"{expect.what}: raised {_describe(err)}")
    if isinstance(err, tf.errors.ResourceExhaustedError):
        return type(err).__name__
    names = named(case, err)
    if not names & expect.involved:
        raise UnnamedError(
            f"{expect.what}: {type(err).__name__} names none of {sorted(expect.involved)}: {message(err)[:600]!r}"
        )
    return type(err).__name__


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {message(err)[:600]!r}"


def _same_as_reference(case: Case, inputs: Inputs, outputs: list) -> None:
    spec = case.spec
    if len(outputs) != len(spec.outputs):
        raise WrongResult(f"{len(outputs)} outputs, the op has {len(spec.outputs)}")
    expected_dtypes = [case.types.get(out.dtype) or tf.as_dtype(out.dtype) for out in spec.outputs]
    for out, got, dtype in zip(spec.outputs, outputs, expected_dtypes, strict=True):
        shape = instantiate(out.shape, case.dims)
        if got.dtype != dtype or tuple(got.shape) != shape:
            raise WrongResult(f"{out.name}: {got.dtype.name}{list(got.shape)}, expected {dtype.name}{list(shape)}")
    if all(not o.shape.num_elements() for o in outputs):
        return  # nothing to compare (and no reference to run on huge empty shapes)
    # An input with a huge size has no element, nor has any output with one:
    # the reference (whose own shape ops can't take such sizes) runs with
    # those sizes as 0, which leaves the other outputs as they are.
    reference = {
        name: tf.zeros([0 if size >= cases.HUGE[0] else size for size in value.shape], value.dtype)
        if any(size >= cases.HUGE[0] for size in value.shape)
        else value
        for name, value in inputs.reference.items()
    }
    try:
        with tf.device("/CPU:0"), memory_cap():
            expected = spec.reference(reference, {**case.attrs, **case.types})
    except tf.errors.OpError as err:
        raise ReferenceRaised(f"{case.expect.what}: the op returned, its reference raised {_describe(err)}") from err
    infinite = any(v.dtype.is_floating and bool(tf.reduce_any(tf.math.is_inf(v))) for v in reference.values())
    for out, got, want in zip(spec.outputs, outputs, expected, strict=True):
        if want is not None and got.shape.num_elements():
            _compare(out.name, got, want, infinite)


def _compare(name: str, got: tf.Tensor, want, infinite_inputs: bool = False) -> None:
    """NaN where the reference has NaN, the same infinities, finite values
    to the reference tolerance of got's dtype (tfkit/tolerances.py). Where
    an input holds an infinity, NaN and the infinities stand for each other:
    inf - inf is NaN in one evaluation order and the infinite limit in
    another (tests/ops/test_edges.py holds the same rule)."""
    defined = True
    if isinstance(want, Where):
        want, defined = want.values, np.asarray(want.defined)
    g = tf.cast(got, tf.float64).numpy()
    w = tf.cast(want, tf.float64).numpy()
    if g.shape != w.shape:
        raise WrongResult(f"{name}: shape {g.shape}, the reference's {w.shape}")
    rtol, atol = tolerance(got.dtype).reference
    same_nan = np.isnan(g) == np.isnan(w)
    finite = np.isfinite(g) & np.isfinite(w)
    with np.errstate(invalid="ignore"):
        close = np.where(finite, np.abs(g - w) <= atol + rtol * np.abs(w), (g == w) | (np.isnan(g) & np.isnan(w)))
    if infinite_inputs:
        same_nan = np.isfinite(g) == np.isfinite(w)
        close = close | (~np.isfinite(g) & ~np.isfinite(w))
    bad = ~(same_nan & close) & defined
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise WrongResult(
            f"{name}: {int(bad.sum())} of {bad.size} elements differ from the reference (rtol {rtol:g}, atol "
            f"{atol:g}); first at {list(where)}: {g[where]!r}, the reference {w[where]!r}"
        )
