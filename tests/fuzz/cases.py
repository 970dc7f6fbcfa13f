"""Hypothesis strategies: one call of a raw op, valid or with one thing wrong.

A case starts valid: sizes drawn from the op's table row (zero sizes
included), a type combination the op has kernels for, accepted attribute
values, and values that may hold NaN, infinities, -0, subnormals or the
smallest normal number (all valid inputs). Then at most one of these makes
it wrong, or (where the table says the change still fits) leaves it valid
with other sizes or types:

- shape: one input's size changed, a dimension dropped or added, or the
  input made a scalar;
- dtype: one input, or every input of one type attribute (or an explicit
  type attribute), changed to another dtype;
- attr: an attribute set to a value the op must refuse;
- value: an out-of-range id, or row splits that do not start at 0, decrease
  or do not end at the number of ids;
- handle: the table's resource variable replaced by a handle of a variable
  never created, one without a name, a handle tensor of shape [0] or [2],
  or a handle to a mutex;
- huge: sizes of 2**31 and more in inputs that still hold no element (so a
  product of sizes can overflow int64 while the data is empty); an output
  too large to allocate makes ResourceExhausted the honest answer. Or, only
  traced, sizes no tensor can have with the first dimension unknown (which
  TensorFlow lets a shape function see).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

from tests.fuzz.schema import Derived, Group, OneOf, Size, Spec, bind, instantiate

MODES = ("eager", "graph", "graph_unknown")
# Traced only, never run: the inputs' first dimension unknown, the others
# any size (no tensor can have them), for the shape functions.
TRACED = "graph_partial"
HUGE = (2**31, 2**32, 2**40, 2**62)
# An output of at least this many bytes can't be allocated (the check's
# memory cap, ASan's allocation limit and the machine all refuse it).
UNALLOCATABLE_BYTES = 2**44
INT64_MAX = 2**63 - 1
# The most elements an input (or an output that can be allocated) of a
# huge case may have.
SMALL = 4096
# The dtypes a dtype change picks from.
DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.int32, tf.int64, tf.uint8, tf.bool, tf.complex64)
SPECIALS = ("nan", "inf", "-inf", "-0", "subnormal", "tiny")
HANDLES = ("uninitialised", "nameless", "empty", "two", "mutex")
# The honest errors for a handle that names no variable: TensorFlow's own
# ReadVariableOp answers FailedPrecondition.
NO_VARIABLE = (tf.errors.FailedPreconditionError, tf.errors.InvalidArgumentError)


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a case must do.

    kind: "valid" (return the reference's result), "invalid" (raise one of
      `honest`, naming one of `involved`), "exhausted" (an output can't
      be allocated: ResourceExhausted, or an InvalidArgumentError naming
      one of `involved`) or "traced" (traced only: the shape functions
      accept the shapes, or refuse them naming one of `involved`).
    what: the change made to the valid case, for messages.
    """

    kind: str = "valid"
    involved: frozenset[str] = frozenset()
    honest: tuple[type, ...] = (tf.errors.InvalidArgumentError,)
    what: str = "valid"


@dataclasses.dataclass
class Case:
    spec: Spec
    mode: str
    dims: dict
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, tf.DType]  # per input; for a handle, its variable's dtype
    types: dict[str, tf.DType]  # the type attributes (explicit ones are passed)
    attrs: dict
    values: dict[str, np.ndarray]
    handle: str = "variable"
    expect: Expect = Expect()

    def kwargs(self) -> dict:
        explicit = {t.name: self.types[t.name] for t in self.spec.types if t.explicit}
        return {**self.attrs, **explicit}

    def __repr__(self) -> str:
        inputs = ", ".join(f"{n}: {self.dtypes[n].name}{list(s)}" for n, s in self.shapes.items())
        return f"Case({self.spec.op}, {self.mode}, {self.expect.what}; {inputs}; {self.kwargs()}, handle={self.handle})"

    def _repr_pretty_(self, printer, cycle) -> None:  # Hypothesis's report of a falsifying case
        printer.text(repr(self))


def _names(spec: Spec, args) -> frozenset[str]:
    """The names of these arguments and their aliases (and any attribute names given)."""
    by_name = {arg.name: arg for arg in spec.inputs}
    return frozenset(n for a in args for n in (by_name[a].names if a in by_name else (a,)))


def signature(case: Case) -> list[tf.TensorSpec]:
    """A traced-only case's inputs: the first dimension unknown."""
    specs = []
    for arg in case.spec.inputs:
        shape = case.shapes[arg.name]
        if arg.role == "handle":
            specs.append(tf.TensorSpec([], tf.resource))
        else:
            specs.append(tf.TensorSpec([None, *shape[1:]] if shape else [], case.dtypes[arg.name]))
    return specs


# Sizes ----------------------------------------------------------------------


def _sizes(draw, spec: Spec) -> dict:
    dims: dict = {}
    for name, kind in spec.dims.items():
        if isinstance(kind, Size):
            value = draw(st.integers(0, kind.high // 2 if kind.even else kind.high))
            value *= 2 if kind.even else 1
            dims[name] = value if kind.allows(value, dims) else 0
        elif isinstance(kind, Group):
            dims[name] = tuple(draw(st.lists(st.integers(0, kind.high), max_size=kind.max_len)))
        elif isinstance(kind, Derived):
            dims[name] = kind.forward(dims[kind.source])
        elif isinstance(kind, OneOf):
            dims[name] = draw(st.sampled_from(kind.allowed(dims)))
    return dims


def _refresh(spec: Spec, dims: dict, before: dict) -> dict:
    """Derived sizes, choices and zero rules brought in line after free sizes changed."""
    dims = dict(dims)
    for name, kind in spec.dims.items():
        if isinstance(kind, Size) and not kind.allows(dims[name], dims):
            dims[name] = 0
        elif isinstance(kind, Derived):
            dims[name] = kind.forward(dims[kind.source])
        elif isinstance(kind, OneOf):
            allowed = kind.allowed(dims)
            old = kind.allowed(before).index(before[name])
            dims[name] = allowed[min(old, len(allowed) - 1)]
    return dims


def _free(spec: Spec, item) -> set[str]:
    """The free sizes and groups a shape item depends on."""
    if isinstance(item, int):
        return set()
    name = item.lstrip("*")
    kind = spec.dims[name]
    if isinstance(kind, (Size, Group)):
        return {name}
    return set().union(*(_free(spec, other) for other in kind.related()))


def _elements(shape) -> int:
    return int(np.prod(shape, dtype=object)) if shape else 1


def _overflows(shape) -> bool:
    """Whether TensorFlow refuses the shape: a running product past int64."""
    product = 1
    for size in shape:
        product *= size
        if product > INT64_MAX:
            return True
    return False


def _huge(draw, spec: Spec, dims: dict, traced: bool = False) -> tuple[dict, bool]:
    """Sizes of 2**31 and more where every input still has no element (or,
    `traced`, any sizes); returns the sizes and whether an output can't be
    allocated."""
    slots = [(n, None) for n, k in spec.dims.items() if isinstance(k, Size)]
    slots += [(n, i) for n, k in spec.dims.items() if isinstance(k, Group) for i in range(len(dims[n]))]
    chosen = draw(st.lists(st.sampled_from(slots), min_size=1, max_size=3, unique=True))
    huge = {slot: draw(st.sampled_from(HUGE)) for slot in chosen}
    if draw(st.booleans()):  # every dimension of the groups, e.g. x [2**31, 2**31, 0]
        every = 2**40 if traced else HUGE[0]  # traced: their product past int64
        huge = {**{slot: every for slot in slots if slot[1] is not None}, **huge}
    # The sizes that keep them empty.
    zeros = draw(st.lists(st.sampled_from(slots), min_size=1, max_size=2, unique=True))
    small = dims
    for (name, index), value in {**huge, **dict.fromkeys(zeros, 0)}.items():
        if index is None:
            dims = {**dims, name: value}
        else:
            dims = {**dims, name: (*dims[name][:index], value, *dims[name][index + 1 :])}
    dims = _refresh(spec, dims, small)
    reverted = True
    while reverted:  # each round puts back at least one size: it ends
        reverted = False
        for arg, output in [(a, False) for a in spec.inputs] + [(a, True) for a in spec.outputs]:
            shape = instantiate(arg.shape, dims)
            elements = _elements(shape)
            unallocatable = output and elements * 2 >= UNALLOCATABLE_BYTES
            too_big = _overflows(shape) or (elements > SMALL and not unallocatable)
            if any(size > INT64_MAX for size in shape) or (too_big and not traced):
                changed = {n for n in set().union(*(_free(spec, item) for item in arg.shape)) if dims[n] != small[n]}
                dims = _refresh(spec, {**dims, **{n: small[n] for n in changed}}, small)
                reverted = reverted or bool(changed)
    if traced:
        return dims, False
    return dims, any(_elements(instantiate(out.shape, dims)) and _is_huge(out, dims) for out in spec.outputs)


def _is_huge(arg, dims: dict) -> bool:
    return any(size >= HUGE[0] for size in instantiate(arg.shape, dims))


# Types ----------------------------------------------------------------------


def _type_combinations(spec: Spec) -> list[dict]:
    names = [t.name for t in spec.types]
    combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*(t.allowed for t in spec.types))]
    return [c for c in combos if spec.type_rule is None or spec.type_rule(c)]


def _input_dtypes(spec: Spec, types: dict) -> dict[str, tf.DType]:
    return {arg.name: types.get(arg.dtype) or tf.as_dtype(arg.dtype) for arg in spec.inputs}


def bind_types(spec: Spec, dtypes: dict, explicit: dict) -> tuple[dict, set[str]]:
    """The type attributes a call's input dtypes give, and the names
    (arguments, attributes) of every disagreement."""
    types = dict(explicit)
    conflicts: set[str] = set()

    def carriers(attr: str) -> set[str]:
        return {a.name for a in spec.inputs if a.dtype == attr} | {attr}

    for arg in spec.inputs:
        if arg.role == "handle":
            continue
        if spec.type_attr(arg.dtype) is None:
            if dtypes[arg.name] != tf.as_dtype(arg.dtype):
                conflicts.add(arg.name)
        elif types.setdefault(arg.dtype, dtypes[arg.name]) != dtypes[arg.name]:
            conflicts |= carriers(arg.dtype)
    for t in spec.types:
        if types.get(t.name) not in t.allowed:
            conflicts |= carriers(t.name)
    for arg in spec.inputs:
        if arg.role == "handle" and dtypes[arg.name] != types.get(arg.dtype):
            conflicts |= carriers(arg.dtype)
    if not conflicts and spec.type_rule is not None and not spec.type_rule(types):
        conflicts = set().union(*(carriers(t.name) for t in spec.types))
    return types, conflicts


# Values ---------------------------------------------------------------------


def _special(name: str, dtype: tf.DType) -> float:
    info = tf.as_dtype(dtype)
    finfo = np.finfo(np.float32 if info in (tf.float16, tf.bfloat16) else info.as_numpy_dtype)
    subnormal = {tf.float16: 2.0**-24, tf.bfloat16: 2.0**-133}.get(info, float(finfo.smallest_subnormal))
    tiny = {tf.float16: 2.0**-14}.get(info, float(finfo.tiny))
    return {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "-0": -0.0, "subnormal": subnormal, "tiny": tiny}[name]


def _special_values(spec: Spec):
    """(input, where in it, special): any special in an input's data; in a
    grad op's incoming gradient no infinity or NaN (whose product with a
    zero derivative has no value the reference and the kernels must agree
    on: NaN times a tap outside the image is NaN in one, 0 in the other)."""
    primal = [a.name for a in spec.inputs if a.role in ("data", "coords", "positions", "handle")]
    cotangents = [a.name for a in spec.inputs if a.role == "cotangent"]
    choices = [st.tuples(st.sampled_from(primal), st.floats(0, 1), st.sampled_from(SPECIALS))]
    if cotangents:
        finite = [s for s in SPECIALS if s not in ("nan", "inf", "-inf")]
        choices.append(st.tuples(st.sampled_from(cotangents), st.floats(0, 1), st.sampled_from(finite)))
    return st.one_of(choices)


def _splits(rng, count: int, n: int) -> np.ndarray:
    """Row splits of `count` entries from 0 to n, never decreasing."""
    if count == 1:
        return np.zeros([1], np.int64)
    inner = np.sort(rng.integers(0, n + 1, size=count - 2))
    return np.concatenate([[0], inner, [n]]).astype(np.int64)


def _splits_ok(splits: np.ndarray, n: int) -> bool:
    return len(splits) >= 1 and splits[0] == 0 and splits[-1] == n and bool(np.all(np.diff(splits) >= 0))


def _values(spec: Spec, dims: dict, shapes: dict, dtypes: dict, rng, specials) -> dict[str, np.ndarray | None]:
    """Host values of every input (float64 or int64) as its role needs them;
    None where the input has no element (or is made from others: "stat:")."""
    values: dict[str, np.ndarray | None] = {}
    for arg in spec.inputs:
        shape = shapes[arg.name]
        if not _elements(shape) or arg.role.startswith("stat:"):
            values[arg.name] = None
        elif arg.role == "ids":
            top = dtypes[arg.name].max + 1 if dtypes[arg.name].is_integer else 2**31
            values[arg.name] = rng.integers(0, max(min(dims.get("vocab", 1), top), 1), size=shape)
        elif arg.role == "splits" and len(shape) == 1:
            values[arg.name] = _splits(rng, shape[0], dims.get("n", 0))
        elif arg.role == "coords" and shape and shape[-1] == 2:
            # x along the width, y along the height, from outside the image
            # on both sides; some on the pixel grid or half-way between.
            high = np.array([dims.get("width", 1), dims.get("height", 1)], np.float64) + 0.5
            points = -1.5 + rng.uniform(0, 1, size=shape) * (high + 1.5)
            values[arg.name] = np.where(rng.random(shape) < 0.3, np.round(points * 2) / 2, points)
        elif arg.role == "positions":
            values[arg.name] = rng.integers(0, 64, size=shape).astype(np.float64)
        else:
            values[arg.name] = rng.normal(0, 2, size=shape)
    for name, where, special in specials:
        data = values.get(name)
        if data is not None and dtypes[name].is_floating:
            flat = data.reshape(-1)
            flat[min(int(where * flat.size), flat.size - 1)] = _special(special, dtypes[name])
    return values


# The case strategy ----------------------------------------------------------


@st.composite
def cases(draw, spec: Spec) -> Case:
    dims = _sizes(draw, spec)
    types = dict(draw(st.sampled_from(_type_combinations(spec))))
    attrs = {attr.name: draw(st.sampled_from(attr.valid)) for attr in spec.attrs}
    kinds = ["valid", "shape", "dtype", "huge"]
    kinds += ["attr"] if any(a.invalid for a in spec.attrs) or any(t.explicit for t in spec.types) else []
    kinds += ["value"] if any(a.role in ("ids", "splits") for a in spec.inputs) else []
    kinds += ["handle"] if any(a.role == "handle" for a in spec.inputs) else []
    kind = draw(st.sampled_from(kinds))
    expect = Expect()
    traced = kind == "huge" and draw(st.booleans())
    if traced:
        dims, _ = _huge(draw, spec, dims, traced=True)
        expect = Expect("traced", spec.names, what="huge sizes, the first dimension unknown")
    elif kind == "huge":
        dims, exhausted = _huge(draw, spec, dims)
        if exhausted:
            expect = Expect("exhausted", spec.names, what="huge: an output can't be allocated")
        elif any(_is_huge(arg, dims) for arg in spec.inputs):
            expect = Expect(what="huge sizes, no element")
    shapes = {arg.name: instantiate(arg.shape, dims) for arg in spec.inputs}
    dtypes = _input_dtypes(spec, types)
    if kind == "shape":
        shapes, dims, expect = _change_shape(draw, spec, shapes, dims)
    elif kind == "dtype":
        dtypes, types, expect = _change_dtype(draw, spec, dtypes, types)
    elif kind == "attr":
        attrs, types, expect = _change_attr(draw, spec, attrs, types)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    specials = draw(st.lists(_special_values(spec), max_size=3))
    values = dict.fromkeys(shapes) if traced else _values(spec, dims, shapes, dtypes, rng, specials)
    handle = "variable"
    if kind == "value":
        values, expect = _change_values(draw, spec, values, dims, dtypes)
    elif kind == "handle":
        handle = draw(st.sampled_from(HANDLES))
        honest = NO_VARIABLE if handle in ("uninitialised", "nameless") else Expect.honest
        params = next(a.name for a in spec.inputs if a.role == "handle")
        expect = Expect("invalid", _names(spec, [params]), honest, what=f"handle: {handle}")
    mode = TRACED if traced else draw(st.sampled_from(MODES))
    return Case(spec, mode, dims, shapes, dtypes, types, attrs, values, handle, expect)


def _change_shape(draw, spec: Spec, shapes: dict, dims: dict):
    arg = draw(st.sampled_from(spec.inputs))
    shape = list(shapes[arg.name])
    how = draw(st.sampled_from(("resize", "drop", "insert", "scalar") if shape else ("insert",)))
    if how == "resize":
        position = draw(st.integers(0, len(shape) - 1))
        shape[position] = draw(st.integers(0, 9).filter(lambda size: size != shape[position]))
    elif how == "drop":
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif how == "insert":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(0, 4)))
    else:
        shape = []
    shapes = {**shapes, arg.name: tuple(shape)}
    what = f"shape: {arg.name} {how} to {list(shape)}"
    found = bind(spec, shapes)
    if found.conflicts:
        return shapes, dims, Expect("invalid", _names(spec, found.conflicts), what=what)
    return shapes, found.dims, Expect(what=f"{what} (still valid)")


def _change_dtype(draw, spec: Spec, dtypes: dict, types: dict):
    carriers = [t for t in spec.types if t.explicit or any(a.dtype == t.name for a in spec.inputs)]
    if draw(st.booleans()) or not carriers:
        arg = draw(st.sampled_from(spec.inputs))
        dtype = draw(st.sampled_from([d for d in DTYPES if d != dtypes[arg.name]]))
        dtypes = {**dtypes, arg.name: dtype}
        what = f"dtype: {arg.name} as {dtype.name}"
        explicit = {t.name: types[t.name] for t in spec.types if t.explicit}
    else:
        attr = draw(st.sampled_from(carriers))
        dtype = draw(st.sampled_from([d for d in DTYPES if d != types[attr.name]]))
        dtypes = {a.name: dtype if a.dtype == attr.name else dtypes[a.name] for a in spec.inputs}
        what = f"dtype: type attribute {attr.name} as {dtype.name}"
        explicit = {t.name: (dtype if t.name == attr.name else types[t.name]) for t in spec.types if t.explicit}
    bound, conflicts = bind_types(spec, dtypes, explicit)
    if conflicts:
        return dtypes, {**types, **explicit}, Expect("invalid", _names(spec, conflicts), what=what)
    return dtypes, bound, Expect(what=f"{what} (still valid)")


def _change_attr(draw, spec: Spec, attrs: dict, types: dict):
    choices = [(a.name, v) for a in spec.attrs for v in a.invalid]
    choices += [(t.name, d) for t in spec.types if t.explicit for d in DTYPES if d != types[t.name]]
    name, value = draw(st.sampled_from(choices))
    what = f"attr: {name}={value!r}"
    if spec.type_attr(name) is None:
        return {**attrs, name: value}, types, Expect("invalid", frozenset([name]), what=what)
    _, conflicts = bind_types(spec, _input_dtypes(spec, types), {name: value})
    types = {**types, name: value}
    if conflicts:
        return attrs, types, Expect("invalid", _names(spec, conflicts), what=what)
    return attrs, types, Expect(what=f"{what} (still valid)")


def _change_values(draw, spec: Spec, values: dict, dims: dict, dtypes: dict):
    ids = next(a for a in spec.inputs if a.role == "ids")
    splits = next(a for a in spec.inputs if a.role == "splits")
    which = ids if values[ids.name] is not None and values[ids.name].size and draw(st.booleans()) else splits
    data = values[which.name]
    if data is None or not data.size:
        return values, Expect(what="value: nothing to change")
    data = data.copy().reshape(-1)
    position = draw(st.integers(0, data.size - 1))
    if which is ids:
        info = np.iinfo(dtypes[ids.name].as_numpy_dtype) if dtypes[ids.name].is_integer else np.iinfo(np.int32)
        vocab = dims["vocab"]
        data[position] = draw(st.sampled_from((vocab, vocab + 1, vocab + 1000, -1, int(info.min), int(info.max))))
        ok = bool(np.all((data >= 0) & (data < vocab)))
    else:
        n = dims["n"]
        data[position] = draw(st.sampled_from((-1, 1, n - 1, n + 1, 2**62, -(2**62), -(2**63), INT64_MAX)))
        ok = _splits_ok(data, n)
    what = f"value: {which.name}[{position}] = {data[position]}"
    values = {**values, which.name: data}
    if ok:
        return values, Expect(what=f"{what} (still valid)")
    return values, Expect("invalid", _names(spec, [which.name]), what=what)
