"""What a generated family computes: its inputs, attributes and math, as the
code snippets the templates in family/ are filled with.

Two signatures exist: the scaffold's own example (`soft_clip`, one input `x`,
a float attr `limit`), and one read from a prototype op (`new-op --from`):
its positional parameters become same-shape float inputs, its keyword-only
parameters attributes, its docstring the op's, and the kernels start from
the sum of the inputs, which the generated tests mark as not yet matching the
prototype.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Names the generated C++ and Python use themselves.
_RESERVED = {"y", "dy", "n", "i", "begin", "end", "ctx", "stream", "op", "acc", "c", "T", "U", "G", "backend"}
_CPP_KEYWORDS = {
    "auto", "bool", "break", "case", "char", "const", "default", "delete", "do", "double", "else", "enum",
    "explicit", "float", "for", "goto", "if", "int", "long", "new", "operator", "private", "protected",
    "public", "register", "return", "short", "signed", "sizeof", "static", "struct", "switch", "template",
    "this", "throw", "typedef", "union", "unsigned", "using", "virtual", "void", "volatile", "while",
}  # fmt: skip


class SignatureError(ValueError):
    """A prototype whose signature the scaffold can't turn into a family."""


@dataclass(frozen=True)
class Attr:
    name: str
    kind: str  # "float", "int" or "bool"
    default: float | int | bool
    positive: bool = False  # a float that must be > 0 (else just finite)

    @property
    def literal(self) -> str:
        """The default as REGISTER_OP writes it."""
        if self.kind == "bool":
            return "true" if self.default else "false"
        return repr(float(self.default)) if self.kind == "float" else str(int(self.default))

    @property
    def kernel_type(self) -> str:
        return {"float": "Acc<T>", "int": "int64_t", "bool": "bool"}[self.kind]

    @property
    def member_type(self) -> str:
        return {"float": "float", "int": "int64_t", "bool": "bool"}[self.kind]


@dataclass
class Signature:
    inputs: list[str]
    attrs: list[Attr]
    summary: str  # one line: what y is
    doc: str  # the op's docstring body (Args/Returns/Raises follow)
    grad_reads: list[str]  # what the grad op reads after dy: input names and/or "y"
    forward: str  # the math of y_i in U, `{abs}` for the absolute value
    backward_prelude: list[str]  # C++ statements before the gradients, in U
    backward: list[str]  # d<input>_i, one per input, in U
    reference: str  # the Python/TF expression of y on the accumulator-cast inputs (<name>f)
    numpy: str  # the NumPy float64 expression the tests check (soft_clip only)
    test_attrs: dict = field(default_factory=dict)
    prototype: str | None = None  # MODULE:FUNCTION
    prototype_has_grad: bool = False


def soft_clip() -> Signature:
    return Signature(
        inputs=["x"],
        attrs=[Attr("limit", "float", 3.0, positive=True)],
        summary="y = x / (1 + |x| / limit), element-wise, a smooth clip to (-limit, limit)",
        doc="A smooth clip of `x` to (-limit, limit): `x / (1 + |x| / limit)`.",
        grad_reads=["y"],
        forward="x_i / (U(1) + {abs}(x_i) / limit)",
        backward_prelude=["const U t = U(1) - {abs}(y_i) / limit;"],
        backward=["dy_i * t * t"],
        reference="xf / (1.0 + tf.abs(xf) / limit)",
        numpy="x / (1.0 + np.abs(x) / 2.5)",
        test_attrs={"limit": 2.5},
    )


def from_prototype(spec: str, root: Path) -> Signature:
    """The signature of the prototype op at MODULE:FUNCTION (imported with
    `root` first on the path)."""
    function = _import(spec, root)
    from tfkit.declare import Op

    implementation = function.implementations.get("prototype") if isinstance(function, Op) else None
    if implementation is None:
        raise SignatureError(f"--from {spec}: not a prototype op (a function decorated with @tfkit.prototype.op)")
    if implementation.rule is not None:
        raise SignatureError(
            f"--from {spec}: the prototype declares outputs=; new-op makes element-wise families (one output "
            "shaped like the inputs). Start from `new-op NAME` and change the shape function instead."
        )
    parameters = inspect.signature(implementation.function).parameters.values()
    inputs = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not inputs or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
        raise SignatureError(f"--from {spec}: the prototype needs named tensor parameters and no *args/**kwargs")
    attrs = [_attr(spec, p) for p in parameters if p.kind == p.KEYWORD_ONLY]
    names = [*inputs, *(a.name for a in attrs)]
    for name in names:
        _check_identifier(spec, name)
    clashes = sorted({f"d{name}" for name in inputs} & set(names))
    if len(set(names)) != len(names) or clashes:
        raise SignatureError(f"--from {spec}: the gradient names d<input> clash with the parameters {clashes}")
    n = len(inputs)
    summary = f"the compiled form of the prototype {spec}"
    doc = inspect.getdoc(implementation.function) or f"The compiled form of the prototype op {spec}."
    return Signature(
        inputs=inputs,
        attrs=attrs,
        summary=summary,
        doc=doc.split("\n\n")[0] if "\nArgs:" in doc else doc,
        grad_reads=[*inputs, "y"],
        forward=" + ".join(f"{name}_i" for name in inputs),
        backward_prelude=[],
        backward=["dy_i"] * n,
        reference=" + ".join(f"{name}f" for name in inputs),
        numpy="",
        test_attrs={a.name: a.default for a in attrs},
        prototype=spec,
        prototype_has_grad=implementation.grad is not None or not implementation.numpy,
    )


def _import(spec: str, root: Path):
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise SignatureError(f"--from {spec!r}: expected MODULE:FUNCTION, e.g. examples.prototype_op:softclip")
    sys.path.insert(0, str(root.resolve()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SignatureError(f"--from {spec}: can't import {module_name}: {err}") from err
    finally:
        sys.path.remove(str(root.resolve()))
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise SignatureError(f"--from {spec}: {module_name} has no {function_name!r}") from None


def _attr(spec: str, parameter: inspect.Parameter) -> Attr:
    default = parameter.default
    if default is inspect.Parameter.empty:
        raise SignatureError(
            f"--from {spec}: the attribute {parameter.name!r} has no default; give it one (the generated "
            "op, its tests and benchmark call it with the defaults)"
        )
    if isinstance(default, bool):
        return Attr(parameter.name, "bool", default)
    if isinstance(default, int):
        return Attr(parameter.name, "int", default)
    if isinstance(default, float):
        return Attr(parameter.name, "float", default)
    raise SignatureError(
        f"--from {spec}: the attribute {parameter.name!r} defaults to {default!r}; generated families take "
        "float, int and bool attributes"
    )


def _check_identifier(spec: str, name: str) -> None:
    if not _IDENTIFIER.fullmatch(name) or name in _RESERVED or name in _CPP_KEYWORDS or keyword.iskeyword(name):
        raise SignatureError(
            f"--from {spec}: the parameter name {name!r} can't be used in the generated C++ and Python; "
            f"rename it (reserved: {sorted(_RESERVED)})"
        )


def snippets(sig: Signature) -> dict[str, str]:
    """The template values that depend on the signature."""
    values = {}
    values.update(_kernel_snippets(sig))
    values.update(_op_snippets(sig))
    values.update(_python_snippets(sig))
    return values


def _join(args: list[str], indent: int, width: int = 72) -> str:
    """args joined by ", ", wrapped onto lines `indent` spaces deep."""
    lines, line = [], ""
    for arg in args:
        if line and len(line) + len(arg) + 2 > width:
            lines.append(line + ",")
            line = arg
        else:
            line = f"{line}, {arg}" if line else arg
    return ("\n" + " " * indent).join([*lines, line])


def _row_range(params: list[str]) -> list[str]:
    """A launcher's parameters with the element count as a [begin, end) range."""
    return [p.replace("int64_t n", "int64_t begin, int64_t end") for p in params]


def _pointers(names, const=True, ptr="T") -> list[str]:
    return [f"{'const ' if const else ''}{ptr}* {name}" for name in names]


def _kernel_snippets(sig: Signature) -> dict[str, str]:
    grads = [f"d{name}" for name in sig.inputs]
    attr_params = [f"{a.kernel_type} {a.name}" for a in sig.attrs]
    attr_names = [a.name for a in sig.attrs]
    forward_params = [*_pointers(sig.inputs), "int64_t n", *attr_params, "T* y"]
    backward_params = [*_pointers(["dy", *sig.grad_reads]), "int64_t n", *attr_params, *_pointers(grads, False)]
    unused = "[[maybe_unused]] " if sig.prototype else ""

    def body(loads, prelude, stores, load, store, abs_fn):
        lines = [f"    {unused}const U {v}_i = {load.format(v)};" for v in loads]
        lines += [f"    {s.format(abs=abs_fn)}" for s in prelude]
        lines += [f"    {out}[i] = {store.format(e.format(abs=abs_fn))};" for out, e in stores]
        return "\n".join(lines)

    def bodies(load, store, abs_fn):
        forward = body(sig.inputs, [], [("y", sig.forward)], load, store, abs_fn)
        stores = list(zip(grads, sig.backward))
        backward = body(["dy", *sig.grad_reads], sig.backward_prelude, stores, load, store, abs_fn)
        return forward, backward

    cpu_forward, cpu_backward = bodies("static_cast<U>({}[i])", "static_cast<T>({})", "std::abs")
    gpu_forward, gpu_backward = bodies("Load<U>({}[i])", "Store<T>({})", "fabs")

    def device_args(names_const, names_out, cast, indent):
        return _join(
            [*(f"reinterpret_cast<const {cast}*>({n})" for n in names_const), "n", *attr_names,
             *(f"reinterpret_cast<{cast}*>({n})" for n in names_out)],
            indent,
        )  # fmt: skip

    def types(params):
        return ", ".join(p.rsplit(" ", 1)[0] for p in params)

    return {
        "summary": sig.summary,
        "module_doc": textwrap.fill(f"The ${{family}} family: {sig.summary}.", 76),
        "summary_comment": "\n// ".join(textwrap.wrap(f"{sig.summary}, and its gradient. CPU kernels.", 74)),
        "cpu_forward_params": _join(_row_range(forward_params), 4),
        "cpu_backward_params": _join(_row_range(backward_params), 4),
        "cpu_forward_body": cpu_forward,
        "cpu_backward_body": cpu_backward,
        "forward_params": _join(forward_params, 4),
        "backward_params": _join(backward_params, 4),
        "device_forward_params": _join(forward_params, 4).replace("Acc<T>", "U"),
        "device_backward_params": _join(backward_params, 4).replace("Acc<T>", "U"),
        "gpu_forward_body": gpu_forward,
        "gpu_backward_body": gpu_backward,
        "forward_types": types(forward_params),
        "backward_types": types(backward_params),
        "device_forward_args": device_args(sig.inputs, ["y"], "DeviceT<T>", 6),
        "device_backward_args": device_args(["dy", *sig.grad_reads], grads, "DeviceT<T>", 6),
        "gpu_forward_args": _join([*(f"AsGpu({n})" for n in sig.inputs), "n", *attr_names, "AsGpu(y)"], 24),
        "gpu_backward_args": _join(
            [*(f"AsGpu({n})" for n in ["dy", *sig.grad_reads]), "n", *attr_names, *(f"AsGpu({n})" for n in grads)], 24
        ),
        "cpu_forward_args": _join([*sig.inputs, "begin, end", *attr_names, "y"], 20),
        "cpu_backward_args": _join(["dy", *sig.grad_reads, "begin, end", *attr_names, *grads], 20),
    }


def _op_snippets(sig: Signature) -> dict[str, str]:
    grads = [f"d{name}" for name in sig.inputs]
    shape_checks = []
    for a in (a for a in sig.attrs if a.kind == "float"):
        check = "CheckPositiveFinite" if a.positive else "CheckFinite"
        shape_checks += [
            f"  float {a.name};",
            f'  TF_RETURN_IF_ERROR(c->GetAttr("{a.name}", &{a.name}));',
            f'  TF_RETURN_IF_ERROR({check}("{a.name}", {a.name}));',
        ]
    kernel_gets = []
    for a in sig.attrs:
        kernel_gets.append(f'    OP_REQUIRES_OK(ctx, ctx->GetAttr("{a.name}", &{a.name}_));')
        if a.kind == "float":
            check = "CheckPositiveFinite" if a.positive else "CheckFinite"
            kernel_gets.append(f'    OP_REQUIRES_OK(ctx, {check}("{a.name}", {a.name}_));')
    attr_values = [f"static_cast<Acc<T>>({a.name}_)" if a.kind == "float" else f"{a.name}_" for a in sig.attrs]
    return {
        "attr_shape_checks": "\n".join([*shape_checks, "  return absl::OkStatus();"]),
        "op_inputs": "\n".join(f'    .Input("{name}: T")' for name in sig.inputs),
        "op_attrs": "\n".join(f'    .Attr("{a.name}: {a.kind} = {a.literal}")' for a in sig.attrs),
        "grad_inputs": "\n".join(f'    .Input("{name}: T")' for name in ["dy", *sig.grad_reads]),
        "op_input_names": ", ".join(f'"{name}"' for name in sig.inputs),
        "grad_input_names": ", ".join(f'"{name}"' for name in ["dy", *sig.grad_reads]),
        "grad_outputs": "\n".join(f'    .Output("{name}: T")' for name in grads),
        "attr_gets": "\n".join(kernel_gets) if kernel_gets else "    (void)ctx;",
        "attr_members": "\n".join(f"  {a.member_type} {a.name}_ = {{}};" for a in sig.attrs),
        "forward_compute": _compute(sig.inputs, ["y"], "Forward", attr_values),
        "backward_compute": _compute(["dy", *sig.grad_reads], grads, "Backward", attr_values),
    }


def _compute(reads: list[str], writes: list[str], step: str, attr_values: list[str]) -> str:
    """An OpKernel's Compute body: inputs read, same shapes, outputs that
    may take over the first input's buffer, the functor call."""
    first = reads[0]
    lines = [f"    const Tensor& {name} = ctx->input({i});" for i, name in enumerate(reads)]
    lines += [f'    OP_REQUIRES_OK(ctx, CheckSameShape("{name}", {name}, "{first}", {first}));' for name in reads[1:]]
    for i, name in enumerate(writes):
        lines += [
            f"    Tensor* {name} = nullptr;",
            f"    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({{0}}, {i}, {first}.shape(), &{name}));",
        ]
    args = [*(f"{n}.flat<T>().data()" for n in reads), f"{first}.NumElements()", *attr_values]
    args += [f"{n}->flat<T>().data()" for n in writes]
    call = f"    Functor<Device, T>::{step}(\n        ctx, " + _join(args, 8) + ");"
    return "\n".join([*lines, call])


def _python_snippets(sig: Signature) -> dict[str, str]:
    first = sig.inputs[0]
    checks = [f'{first} = _checks.float_input("{first}", {first})']
    checks += [f'{name} = _checks.float_input("{name}", {name}, {first}.dtype, like="{first}")' for name in sig.inputs[1:]]
    checks += [f'_checks.check_same_shape("{name}", {name}, "{first}", {first})' for name in sig.inputs[1:]]
    attr_checks = []
    for a in sig.attrs:
        if a.kind == "float":
            rule = "check_positive_finite" if a.positive else "check_finite"
            attr_checks.append(f'"{a.name}": _checks.{rule}("{a.name}", {a.name})')
        else:
            attr_checks.append(f'"{a.name}": {a.kind}({a.name})')
    annotated = [f"{a.name}: {a.kind} = {a.default!r}" for a in sig.attrs]
    keyword_only = ["*", *annotated] if annotated else []
    bare = ["*", *(a.name for a in sig.attrs)] if sig.attrs else []
    args_doc = [f"{first}: A float16, bfloat16, float32 or float64 tensor of any shape."]
    args_doc += [f"{name}: A tensor of {first}'s shape and dtype." for name in sig.inputs[1:]]
    for a in sig.attrs:
        rule = {"float": "a finite float > 0" if a.positive else "a finite float", "int": "an int", "bool": "a bool"}
        args_doc.append(f"{a.name}: {rule[a.kind]} (default {a.default!r}).")
    tests_grad = sig.prototype_has_grad
    bad = [f"[np.ones(3, np.int32)] * {len(sig.inputs)}, {{}}"]
    floats = f"[np.ones(3, np.float32)] * {len(sig.inputs)}"
    bad += [f'{floats}, {{"{a.name}": np.inf}}' for a in sig.attrs if a.kind == "float"]
    bad += [f'{floats}, {{"{a.name}": 0.0}}' for a in sig.attrs if a.positive]
    if len(sig.inputs) > 1:
        bad.append(f"[np.ones(3, np.float32)] * {len(sig.inputs) - 1} + [np.ones(4, np.float32)], {{}}")
    module, _, function = (sig.prototype or ":").partition(":")
    return {
        "input_list": ", ".join(sig.inputs),
        "prepare_params": ", ".join([*sig.inputs, *keyword_only]),
        "impl_params": ", ".join([*sig.inputs, *bare]),
        "attr_kwargs": ", ".join(f"{a.name}={a.name}" for a in sig.attrs),
        "call_args": ", ".join([*sig.inputs, *(f"{a.name}={a.name}" for a in sig.attrs)]),
        "doc": sig.doc.replace("\n", "\n    "),
        "args_doc": "\n      ".join(args_doc),
        "input_checks": "\n    ".join(checks),
        "attr_checks": ", ".join(attr_checks),
        "accumulator_casts": "\n    ".join(f"{name}f = tf.cast({name}, acc)" for name in sig.inputs),
        "reference_expr": sig.reference,
        "grad_reads": ", ".join(
            "op.outputs[0]" if r == "y" else f"op.inputs[{sig.inputs.index(r)}]" for r in sig.grad_reads
        ),
        "grad_attrs": "".join(f'\n        {a.name}=op.get_attr("{a.name}"),' for a in sig.attrs),
        "n_inputs": str(len(sig.inputs)),
        "test_attrs": "{" + ", ".join(f'"{k}": {v!r}' for k, v in sig.test_attrs.items()) + "}",
        "bad_inputs": "\n        ".join(f"({b})," for b in bad),
        "input_tuple": f"({sig.inputs[0]},)" if len(sig.inputs) == 1 else f"({', '.join(sig.inputs)})",
        "first_input": first,
        "bench_inputs": ", ".join(["x"] * len(sig.inputs)),
        **(_prototype_test(sig) if sig.prototype else _numpy_test(sig)),
    }


def _numpy_test(sig: Signature) -> dict[str, str]:
    names = ", ".join(sig.inputs)
    unpacked = f"({names},)" if len(sig.inputs) == 1 else names
    return {
        "second_check": "against NumPy float64",
        "test_imports": "",
        "second_test": f"""def test_matches_numpy_float64():
    {unpacked} = [t.numpy() for t in inputs((4, 9), tf.float64)]
    np.testing.assert_allclose(${{family}}({names}, **ATTRS).numpy(), {sig.numpy}, rtol=1e-12)""",
    }


def _prototype_test(sig: Signature) -> dict[str, str]:
    module, _, function = sig.prototype.partition(":")
    return {
        "second_check": f"against the prototype {sig.prototype}",  # its reference
        "test_imports": f"\nfrom {module} import {function} as prototype",
        "second_test": f"""@pytest.mark.xfail(
    strict=True,
    reason="the kernels still compute new-op's starting math (the sum of the inputs), not the prototype "
    "{sig.prototype}: write its math in kernels/${{family}}/ (CPU and CUDA kernels) and the reference in "
    "${{ops_package}}.${{family}}, then remove this mark",
)
@pytest.mark.parametrize("dtype", [tf.float64, tf.float32], ids=lambda d: d.name)
def test_matches_the_prototype(dtype):
    report = opcheck(${{family}}, inputs((4, 9), dtype), ATTRS, reference=prototype, checks=["reference", "gradients"])
    assert all(r.status == "passed" for r in report.results.values()), report""",
    }
