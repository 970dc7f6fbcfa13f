"""One op, several implementations: the declaration tfkit's ops and users' ops share.

An `Op` has one name and up to three implementations, chosen per call (so
per `tf.function` trace) by the backend rule of `tfkit.backend`:

- "compiled": a C++/CUDA op from a loaded library;
- "reference": a pure-TensorFlow composite (also what runs under XLA);
- "prototype": a Python function run through `tf.numpy_function` or
  `tf.py_function` (see `tfkit.prototype`).

    softclip = tfkit.Op("softclip")

    @softclip.reference
    def _(x, *, limit=3.0):
        return limit * tf.tanh(x / limit)

    y = softclip(x, limit=2.0)                 # backend=None: TFKIT_BACKEND, else "auto"
    y = softclip(x, limit=2.0, backend="reference")

Positional arguments are tensors; keyword-only arguments are attributes,
Python values fixed when traced. An optional `prepare` function with the
op's public signature converts and validates the arguments once, before any
implementation runs; the Op then takes that function's name, docstring and
signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from tfkit import _loader
from tfkit import backend as _backend

# The order "auto" tries the implementations in.
_AUTO_ORDER = ("compiled", "reference", "prototype")

# The docstring paragraph every Op's `backend` argument gets.
_BACKEND_DOC = """\
  backend: "compiled", "reference", "auto", or None for the TFKIT_BACKEND
    environment variable (default "auto"). Inside an XLA compilation "auto"
    runs the reference."""


def _with_backend_arg(doc: str | None) -> str | None:
    """`doc` with the backend paragraph at the end of its Args section."""
    if not doc:
        return doc
    lines = inspect.cleandoc(doc).splitlines()
    if "Args:" not in lines:
        return "\n".join([*lines, "", "Args:", _BACKEND_DOC])
    end = lines.index("Args:") + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return "\n".join([*lines[:end], _BACKEND_DOC, *lines[end:]])


class Op:
    """An op with one name and compiled / reference / prototype implementations.

    Args:
      name: The op's name in messages, e.g. "tfkit.ops.layer_norm".
      prepare: Optional `prepare(*args, **kwargs) -> (args, kwargs)` with the
        op's public signature; it converts and checks the arguments for every
        implementation.
    """

    def __init__(self, name: str, *, prepare: Callable[..., tuple[tuple, dict]] | None = None):
        self.name = name
        self.implementations: dict[str, Callable[..., Any]] = {}
        self._prepare = prepare
        self._dispatchers: list[Callable[..., Any]] = []
        self._library: Callable[[], Any] = _loader.load_library
        if prepare is not None:
            functools.update_wrapper(self, prepare)
            self.__doc__ = _with_backend_arg(prepare.__doc__)

    def __repr__(self) -> str:
        return f"<tfkit Op {self.name!r}: {', '.join(self.implementations) or 'no implementation'}>"

    def _register(self, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.implementations[kind] = fn
        return fn

    def reference(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: registers the pure-TensorFlow implementation."""
        return self._register("reference", fn)

    def prototype(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Registers a prototype implementation (made by `tfkit.prototype.op`)."""
        return self._register("prototype", fn)

    def dispatch(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: registers `fn(*args, backend=None, **kwargs)`, called
        with the op's public arguments before anything else; it returns the
        result for arguments it handles (a composite such as a sharded table,
        usually by calling the op on the parts) and `NotImplemented` otherwise."""
        self._dispatchers.append(fn)
        return fn

    def compiled(self, fn: Callable[..., Any] | None = None, *, library: Callable[[], Any] | None = None):
        """Decorator: registers the compiled implementation.

        Args:
          fn: Calls the compiled op, e.g. `lambda x, *, limit: lib.softclip(x, limit=limit)`.
          library: A function that loads the op library, raising
            `tfkit.OpLibraryError` when it can't (default: tfkit's own
            library). "auto" falls back from a library that can't load.
        """
        if library is not None:
            self._library = library
        if fn is None:
            return functools.partial(self._register, "compiled")
        return self._register("compiled", fn)

    def choose(self, backend: str | None = None) -> str:
        """Returns which implementation a call with `backend` runs now.

        An explicit backend must be implemented; one from TFKIT_BACKEND is a
        preference that falls back to the "auto" order when this op lacks it.

        Raises:
          ValueError: no such implementation, or no backend by that name.
          XLAUnsupportedError: inside an XLA compilation, a compiled
            (XLACompiledBackendError) or prototype (XLAPrototypeError)
            implementation was asked for, or "auto" found no reference to
            run there.
          OpLibraryError: "compiled" was asked for and its library can't load.
        """
        choice = _backend.resolve(backend)
        if choice != "auto" and choice not in self.implementations and backend is None:
            choice = "auto"
        if choice == "auto":
            return self._choose_auto()
        if choice not in self.implementations:
            raise ValueError(
                f"{self.name} has no {choice} implementation; it has: {', '.join(self.implementations) or 'none'}"
            )
        if choice != "reference" and _backend.in_xla_compilation():
            raise _backend.xla_error(self, choice, choice)
        if choice == "compiled":
            self._library()
        return choice

    def _choose_auto(self) -> str:
        if _backend.in_xla_compilation():
            if "reference" in self.implementations:
                return "reference"
            declared = [kind for kind in _AUTO_ORDER if kind in self.implementations]
            if declared:
                raise _backend.xla_error(self, "auto", declared[0])
        kinds = [kind for kind in _AUTO_ORDER if kind in self.implementations]
        if kinds[:1] == ["compiled"]:
            try:
                self._library()
                return "compiled"
            except _loader.OpLibraryError as err:
                if len(kinds) == 1:
                    raise ValueError(
                        f"{self.name} has no implementation that can run: its compiled library is unavailable "
                        f"({err}); declare a reference or a prototype"
                    ) from err
                _backend.warn_fallback(err, stacklevel=4, instead=f"{self.name}'s {kinds[1]}")
                return kinds[1]
        if not kinds:
            raise ValueError(f"{self.name} has no implementation that can run: declare a reference or a prototype")
        return kinds[0]

    def __call__(self, *args, backend: str | None = None, **kwargs):
        for dispatcher in self._dispatchers:
            result = dispatcher(*args, backend=backend, **kwargs)
            if result is not NotImplemented:
                return result
        if self._prepare is not None:
            args, kwargs = self._prepare(*args, **kwargs)
        return self.implementations[self.choose(backend)](*args, **kwargs)

    def reference_function(self) -> Callable[..., Any]:
        """The op's public pure-TensorFlow function (`tfkit.ops.X_reference`):
        the op's signature without `backend`, always running the reference."""
        if self._prepare is None:
            raise TypeError(f"{self.name}: reference_function needs an Op declared with prepare=")
        short = self.name.rsplit(".", 1)[-1]

        def reference(*args, **kwargs):
            return self(*args, backend="reference", **kwargs)

        reference.__name__ = reference.__qualname__ = f"{short}_reference"
        reference.__module__ = self._prepare.__module__
        reference.__doc__ = (
            f"Pure-TensorFlow `{short}`: the numerics tfkit's kernels match (XLA compiles it).\n\n"
            f"The arguments and results of `{self.name}`, without `backend`."
        )
        reference.__signature__ = inspect.signature(self._prepare)
        return reference

    @property
    def __signature__(self) -> inspect.Signature | None:
        if self._prepare is None:
            return None
        signature = inspect.signature(self._prepare)
        backend = inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default=None)
        return signature.replace(parameters=[*signature.parameters.values(), backend])
