"""Prototype ops: a Python function used as a TensorFlow op, at once.

    def _softclip_grad(dy, x, y, *, limit):          # NumPy in, NumPy out
        return dy * (1.0 - (y / limit) ** 2)

    @tfkit.prototype.op(grad=_softclip_grad)
    def softclip(x, *, limit=3.0):                    # NumPy in, NumPy out
        return limit * np.tanh(x / limit)

    y = softclip(tf.random.normal([8, 16]), limit=2.0)

Positional parameters are tensors, keyword-only parameters are attributes
(Python values fixed when traced). The result is a `tfkit.declare.Op` whose
"prototype" implementation runs the function; a reference or a compiled
implementation can be declared on it later under the same name.

Two kinds of body:

- `body="numpy"` (the default): NumPy arrays in and out, run by
  `tf.numpy_function`. The cheapest way into Python (about as fast as a
  compiled op's call overhead allows eagerly); TensorFlow can't see inside,
  so gradients need `grad=`.
- `body="tensorflow"`: eager TensorFlow tensors in and out, run by
  `tf.py_function`. Much slower per call (an eager context for every call),
  but differentiable without `grad=`: TensorFlow records the ops it runs.

A prototype runs in the Python process that traced it: it can't run under
XLA (where it raises `tfkit.backend.XLAPrototypeError`, naming the
function), and it can't be exported (see `tfkit.saved_model`): declare a
reference or compiled implementation for that.
"""

from __future__ import annotations

import functools
import inspect
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfkit import _compat
from tfkit._shapes import shape_string
from tfkit.declare import Op

__all__ = [
    "PrototypeError",
    "PrototypeGradientError",
    "PrototypeInvalidArgumentError",
    "PrototypeOutputError",
    "op",
    "prototype_op_of",
]

BODIES = ("numpy", "tensorflow")
CALLBACK_OP_TYPES = ("PyFunc", "PyFuncStateless", "EagerPyFunc")

# token attr of each traced callback node -> the prototype op's name.
_TOKENS: dict[str, str] = {}

# Whether a gradient tape could record now (always True where TensorFlow's
# internal is missing: tfkit._compat, feature "tape_check").
_could_possibly_record = _compat.tape_check()


class PrototypeError(RuntimeError):
    """The user's function raised; the message names the op and the original."""


class PrototypeGradientError(Exception):
    """A prototype was differentiated where it defines no gradient.

    (A plain Exception, so tf.function's error rewriting keeps its type.)"""


class PrototypeInvalidArgumentError(tf.errors.InvalidArgumentError, ValueError):
    """The user's function rejected its arguments (it raised a ValueError or an
    InvalidArgumentError); the message names the op and the original.

    Also a ValueError, which TensorFlow's Python callback ops turn into an
    InvalidArgumentError when they run in a graph.
    """

    def __init__(self, node_def, op, message, *args):
        super().__init__(node_def, op, message, *args)


class PrototypeOutputError(PrototypeInvalidArgumentError):
    """A prototype returned outputs that do not match its declared rule."""


def op(
    fn: Callable[..., Any] | None = None,
    *,
    grad: Callable[..., Any] | None = None,
    outputs: Any = None,
    body: str = "numpy",
    name: str | None = None,
) -> Any:
    """Decorator: turns a Python function into an op (a `tfkit.declare.Op`).

    Args:
      fn: The function. Positional parameters receive the input tensors (as
        NumPy arrays for body="numpy", eager tensors for body="tensorflow");
        keyword-only parameters are attributes.
      grad: Optional gradient, `grad(*dys, *inputs, *outputs, **attrs)`,
        same kind of body, returning one gradient per input (a single value
        for one input; None for an input with no gradient).
      outputs: The outputs' shapes and dtypes: a `tf.TensorSpec`, a list of
        them (several outputs), or a function `outputs(*input_specs,
        **attrs)` returning either; default: one output like the first input.
      body: "numpy" (tf.numpy_function) or "tensorflow" (tf.py_function).
      name: The op's name in messages (default: the function's name).

    Returns:
      An `Op`, callable as `op(*tensors, backend=None, **attrs)`.
    """
    if body not in BODIES:
        raise ValueError(f"body must be one of {BODIES}, got {body!r}")

    def declare(function: Callable[..., Any]) -> Op:
        declared = Op(name or function.__name__)
        declared.prototype(_Prototype(declared.name, function, grad, outputs, body))
        functools.update_wrapper(declared, function)
        return declared

    return declare if fn is None else declare(fn)


class _Prototype:
    """The prototype implementation of one op."""

    def __init__(self, name, function, grad, outputs, body):
        self.name = name
        self.function = function
        self.__wrapped__ = function  # what inspect.unwrap finds: XLA's refusal names it
        self.grad = grad
        self.rule = outputs
        self.numpy = body == "numpy"
        self.attr_defaults = _keyword_only_defaults(function)
        self._defaults = {n: d for n, d in self.attr_defaults.items() if d is not inspect.Parameter.empty}
        self._required = [n for n in self.attr_defaults if n not in self._defaults]

    @property
    def _runner(self):
        """The TensorFlow op that calls back into Python for this body."""
        return tf.numpy_function if self.numpy else tf.py_function

    def _complete(self, attrs: dict) -> dict:
        """attrs with the defaults filled in; unknown or missing ones raise."""
        unknown = attrs.keys() - self.attr_defaults.keys()
        if unknown:
            raise TypeError(
                f"{self.name} got unknown attributes {sorted(unknown)}; its keyword-only parameters are "
                f"{sorted(self.attr_defaults)}"
            )
        missing = [n for n in self._required if n not in attrs]
        if missing:
            raise TypeError(f"{self.name} needs the attributes {missing}")
        return {**self._defaults, **attrs}

    def __call__(self, *args, **attrs):
        attrs = self._complete(attrs) if attrs or self._required else self._defaults
        inputs = [a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a) for a in args]
        eager = tf.executing_eagerly()
        if not eager:
            _keep_keras_off_xla()
        if self.grad is None and not self.numpy:
            return self._forward(inputs, attrs)  # tf.py_function records its own gradient
        if (eager or self.grad is None) and not _could_possibly_record():
            return self._forward(inputs, attrs)  # no tape can ask for a gradient
        return self._with_gradient(inputs, attrs)

    # Forward -----------------------------------------------------------

    def _forward(self, inputs, attrs):
        if self.numpy and tf.executing_eagerly():
            results, several = self._run(*[np.asarray(x) for x in inputs], attrs=attrs)
            results = [tf.convert_to_tensor(r) for r in results]
            return results if several else results[0]
        specs, several = self._declared(inputs, attrs)

        def callback(*values):
            return self._run(*values, attrs=attrs)[0]

        results = self._runner(callback, inputs, [s.dtype for s in specs], name=_node_name(self.name))
        results = list(results) if isinstance(results, (list, tuple)) else [results]
        for result, spec in zip(results, specs, strict=True):
            result.set_shape(spec.shape)
        if not tf.executing_eagerly():
            _remember(results[0].op, self.name)
        return results if several else results[0]

    def _declared(self, inputs, attrs):
        """The output specs the rule gives for these inputs (static shapes
        at trace time, concrete ones when run), and whether there are several."""
        specs = _apply_rule(self.rule, [_as_spec(x) for x in inputs], attrs)
        several = isinstance(specs, (list, tuple))
        return (list(specs) if several else [specs]), several

    def _run(self, *values, attrs):
        """The Python callback: the user's function, then the output check.
        Returns the outputs and whether there are several."""
        result = self._call_user(self.function, values, attrs)
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        results = [np.asarray(r) if self.numpy else tf.convert_to_tensor(r) for r in results]
        if self.rule is None and len(results) == 1 and _same_shape_and_dtype(results[0], values[0]):
            return results, False  # the default rule, met: the fast path
        specs, several = self._declared(values, attrs)
        if len(results) != len(specs):
            raise PrototypeOutputError(
                None, None, f"{self.name} declares {len(specs)} outputs but its function returned {len(results)}"
            )
        for index, (value, spec) in enumerate(zip(results, specs, strict=True)):
            returned = _as_spec(value)
            if returned.dtype != spec.dtype or not spec.shape.is_compatible_with(returned.shape):
                raise PrototypeOutputError(
                    None,
                    None,
                    f"{self.name}: output {index} must have shape {shape_string(spec)} and dtype {spec.dtype.name} "
                    f"(its declared rule), but the function returned shape {shape_string(returned)} and dtype "
                    f"{returned.dtype.name}",
                )
        return results, several

    def _call_user(self, function, values, attrs):
        try:
            return function(*values, **attrs)
        except (ValueError, tf.errors.InvalidArgumentError) as err:
            raise PrototypeInvalidArgumentError(None, None, _describe(self.name, err)) from err
        except Exception as err:
            raise PrototypeError(_describe(self.name, err)) from err

    # Gradients ---------------------------------------------------------

    def _with_gradient(self, inputs, attrs):
        @tf.custom_gradient
        def forward(*xs):
            ys = self._forward(list(xs), attrs)
            outs = ys if isinstance(ys, list) else [ys]

            @tf.autograph.experimental.do_not_convert  # keep its error's type
            def backward(*dys, variables=None):
                if self.grad is None:
                    if _compat.in_save_context():
                        return [tf.zeros_like(x) for x in xs]  # the export guard refuses it anyway
                    raise PrototypeGradientError(
                        f"{self.name} has no gradient: its NumPy body is invisible to TensorFlow. Pass "
                        "grad= to tfkit.prototype.op, write the body with TensorFlow ops "
                        "(body='tensorflow'), or declare a reference (@op.reference)."
                    )
                return self._gradient(list(dys), list(xs), outs, attrs)

            return ys, backward

        return forward(*inputs)

    def _gradient(self, dys, xs, ys, attrs):
        @tf.custom_gradient
        def first_order(*tensors):
            @tf.autograph.experimental.do_not_convert  # keep its error's type
            def second_order(*upstream, variables=None):
                if _compat.in_save_context():
                    return [tf.zeros_like(t) for t in tensors]  # the export guard refuses it anyway
                raise PrototypeGradientError(
                    f"{self.name}: second-order gradients through a prototype's grad= function are not "
                    "defined. Declare a reference (@op.reference) and use backend='reference' for them."
                )

            return self._grad_values(list(tensors), len(dys), xs, attrs), second_order

        return first_order(*dys, *xs, *ys)

    def _grad_values(self, tensors, first_x, xs, attrs):
        """Runs grad= on (dys, xs, ys), the xs starting at tensors[first_x];
        an input's None gradient becomes zeros."""

        def callback(*values):
            grads = self._call_user(self.grad, values, attrs)
            grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
            if len(grads) != len(xs):
                raise PrototypeOutputError(
                    None, None, f"{self.name}: grad= returned {len(grads)} gradients for {len(xs)} inputs"
                )
            inputs = values[first_x : first_x + len(xs)]
            return [
                np.zeros(np.shape(v), x.dtype.as_numpy_dtype) if g is None else np.asarray(g, x.dtype.as_numpy_dtype)
                for g, x, v in zip(grads, xs, inputs, strict=True)
            ]

        grads = self._runner(callback, tensors, [x.dtype for x in xs], name=_node_name(self.name + "_grad"))
        grads = grads if isinstance(grads, (list, tuple)) else [grads]
        for g, x in zip(grads, xs, strict=True):
            g.set_shape(x.shape)
        if not tf.executing_eagerly():
            _remember(grads[0].op, self.name + " (its grad=)")
        return grads


def _keyword_only_defaults(function) -> dict[str, Any]:
    """The function's keyword-only parameters (its attributes) and their
    defaults; a required attribute maps to inspect.Parameter.empty."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY}


def _apply_rule(rule, input_specs: Sequence[tf.TensorSpec], attrs: dict):
    if rule is None:
        if not input_specs:
            raise ValueError("an op without inputs needs an outputs= rule")
        return input_specs[0]
    if callable(rule) and not isinstance(rule, tf.TensorSpec):
        return rule(*input_specs, **attrs)
    return rule


def _as_spec(value) -> tf.TensorSpec:
    """The TensorSpec of a tensor (static shape) or an array."""
    shape = value.shape if isinstance(value, tf.Tensor) else np.shape(value)
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))


def _same_shape_and_dtype(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype


def _node_name(op_name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in op_name) or "prototype"


def _remember(node, op_name: str) -> None:
    """Maps a traced callback node's token to the prototype op's name."""
    token = node.get_attr("token")
    _TOKENS[token.decode() if isinstance(token, bytes) else token] = op_name


def prototype_op_of(node_def) -> str | None:
    """The prototype op's name behind a callback NodeDef, if tfkit made it."""
    token = node_def.attr["token"].s.decode() if "token" in node_def.attr else None
    return _TOKENS.get(token)


def _describe(op_name: str, err: Exception) -> str:
    """`op_name` raised `type: message`, with the user's innermost frame."""
    frames = traceback.extract_tb(err.__traceback__)
    here = os.path.abspath(__file__)
    user = [f for f in frames if os.path.abspath(f.filename) != here] or frames
    where = ""
    if user:
        frame = user[-1]
        where = f'\n  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line}'
    return f"prototype op {op_name!r} raised {type(err).__name__}: {err}{where}"


def _keep_keras_off_xla() -> None:
    """Marks the Keras layer being called as not XLA-compatible, so Keras's
    `jit_compile="auto"` does not pick XLA for a model that uses a prototype.
    (Not where Keras's call context can't be read: tfkit._compat, feature
    "keras_call_context".)"""
    layer = _compat.current_keras_layer()
    if layer is not None:
        layer.supports_jit = False
