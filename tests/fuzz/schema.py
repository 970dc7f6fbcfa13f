"""The vocabulary of the fuzz table (specs.py): sizes, arguments, attributes, one op's spec.

An argument's shape is a tuple of items: the name of a size ("c"), a group
of sizes ("*b", any number of dimensions) or a literal int (2). Sizes and
groups are declared once per op in `Spec.dims`; an argument whose shape
names a size shares it with every other argument that names it. `bind`
reads sizes back from the shapes of a call, so whether the shapes of a call
are consistent is decided by the table, never by hand in a test.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import tensorflow as tf

FLOATS = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


@dataclasses.dataclass(frozen=True)
class Size:
    """A free size in [0, high]: even only if `even`, 0 while any of `zero_unless` is 0."""

    high: int
    even: bool = False
    zero_unless: tuple[str, ...] = ()

    def related(self) -> tuple[str, ...]:
        return self.zero_unless

    def allows(self, value: int, dims: dict) -> bool:
        if value < 0 or (self.even and value % 2):
            return False
        return value == 0 or all(dims.get(name, 1) != 0 for name in self.zero_unless)


@dataclasses.dataclass(frozen=True)
class Derived:
    """A size that follows from `source`: `forward(source)`; `inverse(value)`
    is the source it implies (None where no source gives that value)."""

    source: str
    forward: Callable[[int], int]
    inverse: Callable[[int], int | None]

    def related(self) -> tuple[str, ...]:
        return (self.source,)


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A size that is one of `choices(*sizes named in of)` (e.g. 1 or the batch)."""

    of: tuple[str, ...]
    choices: Callable[..., tuple[int, ...]]

    def related(self) -> tuple[str, ...]:
        return self.of

    def allowed(self, dims: dict) -> tuple[int, ...]:
        return tuple(dict.fromkeys(self.choices(*(dims[name] for name in self.of))))


@dataclasses.dataclass(frozen=True)
class Group:
    """Up to `max_len` dimensions, each in [0, high] ("*name" in a shape)."""

    max_len: int
    high: int

    def related(self) -> tuple[str, ...]:
        return ()


@dataclasses.dataclass(frozen=True)
class Arg:
    """An input or output of the raw op.

    dtype: a type attr's name ("T", "U", "Tindices") or a dtype name ("int64").
    role: how its values are made (cases.py): "data", "cotangent" (a grad
      op's incoming gradient), "ids", "splits", "coords", "positions",
      "handle" (a resource variable holding a tensor of `shape` and
      `dtype`), or "stat:NAME" (a row statistic of x that a grad op takes
      from its forward, computed by specs.STATS[NAME]).
    aliases: other names messages may use for it (the public wrapper's).
    """

    name: str
    shape: tuple
    dtype: str
    role: str = "data"
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclasses.dataclass(frozen=True)
class Attr:
    """A non-type attribute: values the op accepts and values it must refuse."""

    name: str
    valid: tuple
    invalid: tuple = ()


@dataclasses.dataclass(frozen=True)
class TypeAttr:
    """A type attribute: inferred from the inputs of that dtype, or passed
    as a keyword where `explicit` (no input carries it)."""

    name: str
    allowed: tuple[tf.DType, ...]
    explicit: bool = False


@dataclasses.dataclass(frozen=True)
class Where:
    """An expected output whose values are defined only where `defined` is true."""

    values: Any
    defined: Any


@dataclasses.dataclass(frozen=True)
class Spec:
    """One raw op: its sizes, inputs, outputs, attributes and its reference.

    reference(inputs, attrs) -> expected outputs: `inputs` maps names to
    tensors (a variable for a handle), `attrs` holds every attribute
    (type attributes as tf.DTypes); an entry may be None where the values
    of that output are not defined (only its shape and dtype are checked),
    or a `Where` where only some are.
    type_rule(types) says whether a combination of type attributes has
    kernels (None: any combination of allowed types).
    """

    op: str
    dims: dict[str, Any]
    inputs: tuple[Arg, ...]
    outputs: tuple[Arg, ...]
    types: tuple[TypeAttr, ...]
    reference: Callable[[dict, dict], list]
    attrs: tuple[Attr, ...] = ()
    type_rule: Callable[[dict], bool] | None = None

    @property
    def names(self) -> frozenset[str]:
        """Every argument and attribute name (and alias) of the op."""
        names = {name for arg in self.inputs for name in arg.names}
        return frozenset(names | {a.name for a in self.attrs} | {t.name for t in self.types})

    def arg(self, name: str) -> Arg:
        return next(arg for arg in self.inputs if arg.name == name)

    def type_attr(self, name: str) -> TypeAttr | None:
        return next((t for t in self.types if t.name == name), None)


def instantiate(shape: tuple, dims: dict) -> tuple[int, ...]:
    """The sizes of a shape template with the sizes of `dims`."""
    sizes: list[int] = []
    for item in shape:
        if isinstance(item, int):
            sizes.append(item)
        elif item.startswith("*"):
            sizes.extend(dims[item[1:]])
        else:
            sizes.append(dims[item])
    return tuple(sizes)


@dataclasses.dataclass
class Binding:
    """The sizes read from a call's shapes, and the arguments that disagree."""

    dims: dict
    conflicts: set[str]
    places: dict[str, set[str]]  # size name -> the arguments it was read from
    seen: dict[str, set] = dataclasses.field(default_factory=dict)  # size name -> every value read

    def conflict(self, *names: str) -> None:
        for name in names:
            self.conflicts.update(self.places.get(name, ()))


def bind(spec: Spec, shapes: dict[str, tuple[int, ...]]) -> Binding:
    """Reads every size of `spec` from the inputs' `shapes`.

    A conflict is an argument whose shape no choice of sizes satisfies
    together with the others: a wrong rank, two sizes that must agree and
    don't, a size its rule refuses (odd, not one of its choices, nonzero
    where it must be 0). A choice that one of the values two arguments give
    a size refuses (a mask's 2 where the query says 0 and dout 2) is one
    too: a kernel that reads the size from either may name it.
    """
    found = Binding({}, set(), {})
    for arg in spec.inputs:
        _read(arg, shapes[arg.name], found)
    for name, kind in spec.dims.items():
        if isinstance(kind, Derived):
            _derive(name, kind, found)
    for name, kind in spec.dims.items():  # sizes only the outputs have
        if isinstance(kind, Derived) and name not in found.dims and kind.source in found.dims:
            found.dims[name] = kind.forward(found.dims[kind.source])
    for name, kind in spec.dims.items():
        value = found.dims.get(name)
        if value is None:
            continue
        if isinstance(kind, Size) and not kind.allows(value, found.dims):
            found.conflict(name, *kind.zero_unless)
        elif isinstance(kind, OneOf) and all(o in found.dims for o in kind.of):
            if value not in kind.allowed(found.dims):
                found.conflict(name, *kind.of)
            elif _refused_by_some_reading(value, kind, found):
                found.conflict(name)
    return found


def _refused_by_some_reading(value, kind: OneOf, found: Binding) -> bool:
    """Whether a choice of the sizes its rule reads, among the values the
    arguments gave them, refuses `value`."""
    readings = itertools.product(*(found.seen.get(name, {found.dims[name]}) for name in kind.of))
    return any(value not in kind.allowed({**found.dims, **dict(zip(kind.of, ins, strict=True))}) for ins in readings)


def _read(arg: Arg, shape: tuple[int, ...], found: Binding) -> None:
    groups = [item for item in arg.shape if isinstance(item, str) and item.startswith("*")]
    group_len = len(shape) - (len(arg.shape) - len(groups))
    if group_len < 0 or (not groups and group_len) or len(groups) > 1:
        found.conflicts.add(arg.name)
        return
    position = 0
    for item in arg.shape:
        if isinstance(item, int):
            if shape[position] != item:
                found.conflicts.add(arg.name)
            position += 1
            continue
        name, width = (item[1:], group_len) if item.startswith("*") else (item, None)
        value = tuple(shape[position : position + width]) if width is not None else shape[position]
        position += width if width is not None else 1
        places = found.places.setdefault(name, set())
        if name in found.dims and found.dims[name] != value:
            found.conflicts.update(places | {arg.name})
        places.add(arg.name)
        found.seen.setdefault(name, set()).add(value)
        found.dims.setdefault(name, value)


def _derive(name: str, kind: Derived, found: Binding) -> None:
    value = found.dims.get(name)
    if value is None:
        return
    if kind.source in found.dims:
        if kind.forward(found.dims[kind.source]) != value:
            found.conflict(name, kind.source)
        return
    source = kind.inverse(value)
    if source is None or source < 0:
        found.conflict(name)
        return
    found.dims[kind.source] = source
    found.places[kind.source] = set(found.places[name])
