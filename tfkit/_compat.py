"""Every TensorFlow, Keras and Python internal tfkit relies on, in one place.

tfkit uses a few names that are no public API and that a later TensorFlow
or Keras release may move or change. Each is one `Feature` here: what it
reaches into, what tfkit does with it, and what tfkit does without it, with
a feature test (its probe) that checks the internal is there with the shape
tfkit expects. The probes run once, when tfkit is imported (this module is
imported by `tfkit.backend`). When one fails, `import tfkit` still succeeds:
the tfkit feature that needs the internal is turned off, with one
`CompatWarning` per process that names the internal and what is off, and
the call sites below take their fallback. `python -m tfkit info` lists which
are active (`status()`).

The call sites use the wrappers at the end of this module, never the
internals themselves. (The C++ internals are behind their own header.)
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import os
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

import tensorflow as tf

__all__ = ["FEATURES", "CompatWarning", "Feature", "active", "get", "status"]


class CompatWarning(RuntimeWarning):
    """An internal tfkit uses is missing or changed; a tfkit feature is off."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One internal tfkit reaches into.

    name: tfkit's short name for it (what `status()` and `info` list).
    internal: what it reaches into, as a reader would look it up.
    enables: what tfkit does with it.
    fallback: what tfkit does when it is missing (the feature that is off).
    probe: the feature test: returns the checked internal (what the call
      sites use), or raises when it is missing or not what tfkit expects.
    """

    name: str
    internal: str
    enables: str
    fallback: str
    probe: Callable[[], Any]


FEATURES: dict[str, Feature] = {}

# name -> (active, reason, value): filled by the probes, once.
_results: dict[str, tuple[bool, str, Any]] = {}
_lock = threading.RLock()


def _feature(name: str, internal: str, enables: str, fallback: str):
    """Registers the decorated function as the probe of a feature."""

    def register(probe: Callable[[], Any]) -> Callable[[], Any]:
        FEATURES[name] = Feature(name, internal, enables, fallback, probe)
        return probe

    return register


def _result(name: str) -> tuple[bool, str, Any]:
    found = _results.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _results:
            feature = FEATURES[name]
            try:
                _results[name] = (True, "", feature.probe())
            except Exception as err:  # whatever a moved or changed internal raises
                _turn_off(feature, f"{type(err).__name__}: {err}")
        return _results[name]


def get(name: str) -> Any:
    """The checked internal of a feature, or None when it is off."""
    return _result(name)[2]


def active(name: str) -> bool:
    """Whether a feature's internal was found and passed its feature test."""
    return _result(name)[0]


def status() -> dict[str, tuple[bool, str]]:
    """Every feature: name -> (active, why not: "" when active)."""
    return {name: _result(name)[:2] for name in FEATURES}


def disable(name: str, reason: str) -> None:
    """Turns a feature off that was found to misbehave where it is used
    (with its one warning, unless it was off already)."""
    with _lock:
        if active(name):
            _turn_off(FEATURES[name], reason)


def _turn_off(feature: Feature, reason: str) -> None:
    _results[feature.name] = (False, reason, None)
    warnings.warn(
        f"tfkit: {feature.internal} is missing or changed ({reason}), so {feature.enables} "
        f"is off ({feature.name}): {feature.fallback}.",
        CompatWarning,
        stacklevel=_first_frame_outside_tfkit(),
    )


def _first_frame_outside_tfkit() -> int:
    """The stacklevel of the code that called into tfkit, or imported it
    (warnings.warn does not count importlib's frames)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = inspect.currentframe(), 0
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<frozen importlib"):
            if not filename.startswith(package):
                return level
            level += 1
        frame = frame.f_back
    return 1


def _internal(module_name: str, attribute: str) -> Any:
    """`module.attribute`, looked up through sys.modules (as `import` would)."""
    return getattr(importlib.import_module(module_name), attribute)


def _callable(value: Any, what: str, *parameters: str) -> Any:
    """`value`, checked to be callable with (at least) these parameter names."""
    if not callable(value):
        raise TypeError(f"{what} is not callable")
    if not parameters:
        return value
    names = list(inspect.signature(value).parameters)
    missing = [p for p in parameters if p not in names]
    if missing:
        raise TypeError(f"{what} takes {names}, not {list(parameters)}")
    return value


# The features -----------------------------------------------------------


@_feature(
    "export_guard",
    "tensorflow.python.saved_model.save._build_meta_graph",
    "the export guard (SavedModel writers refuse, before writing, a model that traced a prototype op)",
    "a model holding prototype ops is written, and fails where it is served; `python -m tfkit check` still "
    "finds their Python-callback ops",
)
def _probe_export_guard():
    module = importlib.import_module("tensorflow.python.saved_model.save")
    _callable(module._build_meta_graph, "_build_meta_graph", "obj", "signatures", "options")
    # Replacing the module's attribute only works if the writers look it up there.
    writer = module.save_and_return_nodes
    if writer.__globals__ is not vars(module) or "_build_meta_graph" not in writer.__code__.co_names:
        raise TypeError("save_and_return_nodes does not call the module's _build_meta_graph")
    return module


@_feature(
    "xla_context",
    "tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext",
    "XLA detection (backend='auto' runs the reference inside jit_compile=True; 'compiled' and prototypes are "
    "refused there with tfkit's message)",
    "every graph counts as not compiled by XLA, so inside jit_compile=True backend='auto' picks the compiled op, "
    "which XLA then rejects: use backend='reference' (or TFKIT_BACKEND=reference) there",
)
def _probe_xla_context():
    detect = _callable(
        _internal("tensorflow.python.ops.control_flow_util", "GraphOrParentsInXlaContext"),
        "GraphOrParentsInXlaContext",
        "graph",
    )
    if detect(tf.Graph()) is not False:
        raise TypeError("GraphOrParentsInXlaContext(tf.Graph()) is not False")
    return detect, tf.compat.v1.get_default_graph


@_feature(
    "tape_check",
    "tensorflow.python.eager.record.could_possibly_record",
    "the prototype fast path (no gradient wrapper while no tape records)",
    "prototype ops always build their gradient wrapper (the same results, slower per call)",
)
def _probe_tape_check():
    could_record = _callable(_internal("tensorflow.python.eager.record", "could_possibly_record"), "it")
    if not isinstance(could_record(), bool):
        raise TypeError("could_possibly_record() does not return a bool")
    return could_record


@_feature(
    "save_context",
    "tensorflow.python.saved_model.save_context.in_save_context",
    "quiet gradients while saving (the gradient a SavedModel writer traces for a prototype without grad= is "
    "zeros, so the export guard reports the prototype)",
    "saving a function that ran such a prototype under a gradient tape fails with TensorFlow's 'Error when "
    "tracing gradients for SavedModel' (from a PrototypeGradientError) instead of the export guard's "
    "ExportError; nothing is written either way",
)
def _probe_save_context():
    in_save = _callable(_internal("tensorflow.python.saved_model.save_context", "in_save_context"), "it")
    if in_save() is not False:
        raise TypeError("in_save_context() is not False outside a save")
    return in_save


@_feature(
    "keras_call_context",
    "keras.src.backend.common.global_state 'current_call_ctx' (Keras's layer call context)",
    "keeping Keras's jit_compile='auto' off XLA for a model whose layer calls a prototype op",
    "Keras's jit_compile='auto' may compile such a model with XLA, where its prototype raises "
    "XLAPrototypeError: compile it with jit_compile=False",
)
def _probe_keras_call_context():
    get_attribute = _callable(
        _internal("keras.src.backend.common.global_state", "get_global_attribute"), "get_global_attribute", "name"
    )
    layer_module = importlib.import_module("keras.src.layers.layer")
    if "current_call_ctx" not in layer_module.Layer._get_call_context.__code__.co_consts:
        raise TypeError("Keras's Layer no longer keeps its call context as 'current_call_ctx'")
    if "entry_layer" not in inspect.signature(layer_module.CallContext).parameters:
        raise TypeError("Keras's CallContext has no entry_layer")
    return get_attribute


@_feature(
    "variable_accessed",
    "tensorflow.python.ops.resource_variable_ops.variable_accessed",
    "in-place variable reads (the compiled embedding bag tells gradient tapes and tf.function that it read a "
    "tf.Variable table)",
    "the compiled embedding bag also reads the table with tf.Variable.read_value_no_copy (an op whose result "
    "is unused), which tells them the same",
)
def _probe_variable_accessed():
    return _callable(
        _internal("tensorflow.python.ops.resource_variable_ops", "variable_accessed"), "variable_accessed", "variable"
    )


_DENSE_PROBE_NAME = "tfkit_compat_probe"


@_feature(
    "keras_dense_state",
    "keras.layers.Dense's lora_enabled and quantization_mode",
    "tfkit.layers.Dense's fused bias + activation (only for a Dense without LoRA or quantization)",
    "tfkit.layers.Dense computes exactly as keras.layers.Dense, unfused",
)
def _probe_keras_dense_state():
    import keras

    layer = keras.layers.Dense(1, name=_DENSE_PROBE_NAME)  # named: Keras's automatic names are left alone
    lora, mode = _dense_state(layer)
    missing = [name for name, value in (("lora_enabled", lora), ("quantization_mode", mode)) if value is _MISSING]
    if missing:
        raise AttributeError(f"a new keras.layers.Dense has no {' or '.join(missing)}")
    if lora is not False or mode is not None:
        raise TypeError(f"a new keras.layers.Dense has lora_enabled={lora!r}, quantization_mode={mode!r}")
    return True


@_feature(
    "keras_dense_quantize",
    "keras.layers.Dense.quantize(mode, type_check, config) (Keras refuses to quantize a subclass of Dense "
    "unless type_check=False)",
    "quantizing tfkit.layers.Dense (layer.quantize, model.quantize, a quantized dtype policy), which then "
    "computes as Keras's quantized Dense",
    "tfkit.layers.Dense cannot be quantized (NotImplementedError; model.quantize warns and leaves it as it is)",
)
def _probe_keras_dense_quantize():
    import keras

    return _callable(keras.layers.Dense.quantize, "Dense.quantize", "mode", "type_check", "config")


@_feature(
    "keras_dot_product_attention",
    "keras.src.backend.tensorflow.nn.dot_product_attention (the function keras.ops.dot_product_attention and "
    "Keras's layers call on the TensorFlow backend)",
    "tfkit.use_fused_attention (Keras's own dot_product_attention computed by tfkit's fused op)",
    "tfkit.use_fused_attention warns and leaves Keras's dot_product_attention as it is; "
    "tfkit.layers.MultiHeadAttention is fused all the same",
)
def _probe_keras_dot_product_attention():
    backend_nn = importlib.import_module("keras.src.backend.tensorflow.nn")
    original = _callable(
        backend_nn.dot_product_attention,
        "dot_product_attention",
        *_KERAS_ATTENTION_PARAMETERS,
    )
    ops_nn = importlib.import_module("keras.src.ops.nn")
    # Replacing the backend module's attribute only works if every caller looks it up there.
    for caller in (ops_nn.dot_product_attention, ops_nn.DotProductAttention.call):
        names = caller.__code__.co_names
        if caller.__globals__.get("backend") is not importlib.import_module("keras.src.backend") or not (
            {"backend", "nn", "dot_product_attention"} <= set(names)
        ):
            raise TypeError(f"{caller.__qualname__} does not call backend.nn.dot_product_attention")
    import keras

    bound = {
        "keras.ops": keras.ops.dot_product_attention,
        "keras.ops.nn": keras.ops.nn.dot_product_attention,
        "keras.src.ops": importlib.import_module("keras.src.ops").dot_product_attention,
    }
    moved = [name for name, function in bound.items() if function is not ops_nn.dot_product_attention]
    if moved:
        raise TypeError(f"{', '.join(moved)} dot_product_attention is not keras.src.ops.nn's")
    backend = importlib.import_module("keras.src.backend")
    if backend.backend() == "tensorflow" and backend.nn is not backend_nn:
        raise TypeError("keras.src.backend.nn is not the TensorFlow backend's nn module")
    return backend_nn, original


_KERAS_ATTENTION_PARAMETERS = (
    "query",
    "key",
    "value",
    "bias",
    "mask",
    "scale",
    "is_causal",
    "flash_attention",
    "attn_logits_soft_cap",
)


@_feature(
    "environ_data",
    "os.environ._data",
    "the fast TFKIT_BACKEND read (from os.environ's own dict, on every op call)",
    "TFKIT_BACKEND is read with os.environ.get (the same value, a little slower per call)",
)
def _probe_environ_data():
    environ = os.environ
    data = environ._data
    if not isinstance(data, dict):
        raise TypeError(f"os.environ._data is a {type(data).__name__}, not a dict")
    encode, decode = environ.encodekey, environ.decodevalue
    for key in list(environ)[:1]:
        if decode(data[encode(key)]) != environ[key]:
            raise TypeError("os.environ._data does not hold os.environ's values")
    return encode, decode


@_feature(
    "op_names",
    "tensorflow.python.framework._pywrap_python_op_gen.GetPythonWrappers (TensorFlow's op wrapper generator)",
    "op names from TensorFlow (tfkit.build.python_op_name asks TensorFlow's generator how it names an op's "
    "Python function)",
    "tfkit.build.python_op_name uses tfkit's copy of TensorFlow's naming rule ('Tfkit>LayerNorm' -> "
    "'tfkit_layer_norm')",
)
def _probe_op_names():
    generate = _callable(_internal("tensorflow.python.framework._pywrap_python_op_gen", "GetPythonWrappers"), "it")
    name = _generated_op_name(generate, "Tfkit>LayerNorm")
    if name != "tfkit_layer_norm":
        raise TypeError(f"it names the function of 'Tfkit>LayerNorm' {name!r}")
    return generate


@_feature(
    "op_registry",
    "tensorflow.python.framework.op_def_registry.get",
    "the registered-op lookup of tfkit.saved_model.check (python -m tfkit check)",
    "check counts a namespaced op as registered only when tfkit's own library provides it, and other ops as "
    "TensorFlow's",
)
def _probe_op_registry():
    lookup = _callable(_internal("tensorflow.python.framework.op_def_registry", "get"), "op_def_registry.get", "name")
    if getattr(lookup("Identity"), "name", None) != "Identity" or lookup("Tfkit>NoSuchOp") is not None:
        raise TypeError("op_def_registry.get does not map op names to their OpDefs")
    return lookup


@_feature(
    "var_mu",
    "tensorflow::Var::mu() (C++: a resource variable's mutex, tested when the op library is compiled)",
    "in-place variable reads by the compiled embedding bag (the table is read under the variable's lock, "
    "never copied)",
    "the compiled embedding bag reads a tf.Variable table's value (a copy per call) and runs on that",
)
def _probe_var_mu():
    from tfkit import _loader

    path = _loader.library_path()
    if not path.is_file():
        return "no op library built"
    found = _loader.compat_features(path).get("var_mu")
    if found is None:  # built before the feature was recorded: it calls Var::mu() itself
        return "not recorded by this op library"
    if not found:
        raise AttributeError(f"{path} was compiled against a TensorFlow whose Var has no mu()")
    return True


@_feature(
    "sharded_variable",
    "tf.__internal__.distribute.ShardedVariable",
    "ShardedVariable tables in tfkit.ops.embedding_bag (each shard's share of a bag computed where it lives)",
    "a ShardedVariable is read whole (joined on the caller, TensorFlow's conversion) instead of shard by shard; "
    "its list of shards (`table.variables`) still takes the sharded path",
)
def _probe_sharded_variable():
    cls = tf.__internal__.distribute.ShardedVariable
    # (No variable is made here: that would start TensorFlow's devices at import.)
    if not isinstance(cls, type) or not isinstance(getattr(cls, "variables", None), property):
        raise TypeError("ShardedVariable has no `variables` property (the list of row shards)")
    return cls


def shard_variables(table: Any) -> list | None:
    """The row-shard variables of a ShardedVariable table, or None."""
    cls = get("sharded_variable")
    return list(table.variables) if cls is not None and isinstance(table, cls) else None


# The call sites' wrappers ----------------------------------------------------


def install_export_guard(check: Callable[[Any], None]) -> bool:
    """Makes every SavedModel writer (tf.saved_model.save, Keras's
    model.export, export_meta_graph) call `check(meta_graph_def)` after it
    traces the model and before it writes anything. Returns whether the
    guard is on (once per process, however often called)."""
    module = get("export_guard")
    if module is None:
        return False
    build = module._build_meta_graph
    if getattr(build, "_tfkit_guard", False):
        return True
    from tensorflow.core.protobuf import meta_graph_pb2

    @functools.wraps(build)
    def guarded(*args, **kwargs):
        result = build(*args, **kwargs)
        meta_graph_def = result[0] if isinstance(result, tuple) and result else None
        if isinstance(meta_graph_def, meta_graph_pb2.MetaGraphDef):
            check(meta_graph_def)
        else:
            disable("export_guard", f"_build_meta_graph returned {type(result).__name__}, not (MetaGraphDef, ...)")
        return result

    guarded._tfkit_guard = True
    guarded._tfkit_wrapped = build
    module._build_meta_graph = guarded
    return True


def in_xla_context() -> bool:
    """Whether the default graph, or a graph it is nested in, is being
    compiled by XLA (jit_compile=True). False when that can't be known."""
    found = get("xla_context")
    if found is None:
        return False
    detect, default_graph = found
    return detect(default_graph())


def _always() -> bool:
    return True


def tape_check() -> Callable[[], bool]:
    """A function that tells whether any gradient tape could record an op
    now; without the internal, one that always says it could."""
    return get("tape_check") or _always


def in_save_context() -> bool:
    """Whether a SavedModel writer is tracing the model now (False when unknown)."""
    in_save = get("save_context")
    return bool(in_save()) if in_save is not None else False


def current_keras_layer():
    """The Keras layer whose call (the outermost one) is running or being
    traced now, or None: outside any, or when that can't be known."""
    get_attribute = get("keras_call_context")
    if get_attribute is None:
        return None
    return getattr(get_attribute("current_call_ctx"), "entry_layer", None)


def variable_accessed(variable) -> None:
    """Tells the gradient tapes and the tf.function being traced that
    `variable` is read, as a read of it would, for an op that reads it in
    place through its handle."""
    record = get("variable_accessed")
    if record is not None:
        record(variable)
    else:
        # A read notifies them; this one copies nothing, and its result is dropped.
        getattr(variable, "read_value_no_copy", variable.value)()


_MISSING = object()


def _dense_state(layer) -> tuple[Any, Any]:
    return getattr(layer, "lora_enabled", _MISSING), getattr(layer, "quantization_mode", _MISSING)


def plain_dense(layer) -> bool:
    """Whether a keras.layers.Dense is plain matmul + bias: no LoRA, not
    quantized. False when that can't be known (so nothing is fused)."""
    if not active("keras_dense_state"):
        return False
    lora, mode = _dense_state(layer)
    return lora is False and mode is None


def quantize_dense(layer, drop_in: type, mode, type_check: bool, config) -> None:
    """Quantizes `layer`, an instance of `drop_in` (a subclass of
    keras.layers.Dense that computes quantized exactly as Keras's Dense), with
    Keras's Dense.quantize. Keras's type check refuses subclasses of
    keras.layers.Dense; here it refuses subclasses of `drop_in` instead."""
    quantize = get("keras_dense_quantize")
    if quantize is None:
        raise NotImplementedError(
            f"Layer {type(layer).__name__} cannot be quantized: this Keras's Dense.quantize is not the one tfkit knows"
        )
    quantize(layer, mode, type_check=type_check and type(layer) is not drop_in, config=config)


def environ_reader(name: str) -> Callable[[], str | None]:
    """A function that returns the environment variable `name` (None when
    unset) whenever called. A missing key makes `os.environ.get` raise and
    catch a KeyError, which costs more than a prototype op's whole wrapper,
    so the mapping's own dict is asked first where it can be."""
    found = get("environ_data")
    if found is None:
        return functools.partial(os.environ.get, name)
    encode, decode = found
    key = encode(name)

    def read() -> str | None:
        data = getattr(os.environ, "_data", None)  # os.environ may be replaced later
        if isinstance(data, dict):
            value = data.get(key)
            return decode(value) if value is not None else None
        return os.environ.get(name)

    return read


def keras_dot_product_attention() -> Callable[..., Any] | None:
    """Keras's own dot_product_attention of the TensorFlow backend (what
    keras.ops.dot_product_attention calls there), or None when this Keras's
    is not the one tfkit knows."""
    found = get("keras_dot_product_attention")
    return None if found is None else found[1]


_routed_attention: list[Callable[..., Any]] = []  # the function tfkit put in Keras's place, if any


def keras_dot_product_attention_routed() -> bool:
    """Whether Keras's dot_product_attention is routed through tfkit's function now."""
    found = get("keras_dot_product_attention")
    return found is not None and bool(_routed_attention) and found[0].dot_product_attention is _routed_attention[0]


def route_keras_dot_product_attention(function: Callable[..., Any] | None) -> bool:
    """Makes `function` the TensorFlow backend's dot_product_attention, the
    one every Keras caller runs (None: Keras's own again). Returns False,
    changing nothing, when this Keras's function is not the one tfkit knows,
    or something else has replaced it since tfkit was imported (the feature
    is then off, with its warning)."""
    with _lock:
        found = get("keras_dot_product_attention")
        if found is None:
            return False
        backend_nn, original = found
        current = backend_nn.dot_product_attention
        if current is not original and current not in _routed_attention:
            disable("keras_dot_product_attention", f"it was replaced by {current!r}, not by tfkit")
            return False
        backend_nn.dot_product_attention = original if function is None else function
        _routed_attention[:] = [] if function is None else [function]
        return True


_DEF = re.compile(rb"^def (\w+)\(", re.MULTILINE)


def _generated_op_name(generate, op_name: str) -> str | None:
    """The first function TensorFlow's generator writes for an op named `op_name`."""
    from tensorflow.core.framework import op_def_pb2

    op_list = op_def_pb2.OpList(op=[op_def_pb2.OpDef(name=op_name)])
    found = _DEF.search(generate(op_list.SerializeToString()))
    return found.group(1).decode() if found else None


@functools.lru_cache(maxsize=1024)
def python_op_name(op_name: str) -> str:
    """The name TensorFlow gives an op's Python function (what
    `tf.load_op_library` returns a module with): TensorFlow's generator's
    answer, or `python_op_name_rule`'s when it can't be asked."""
    generate = get("op_names")
    if generate is not None:
        try:
            name = _generated_op_name(generate, op_name)
        except Exception:  # e.g. a name it refuses: the rule is all there is
            name = None
        if name:
            return name
    return python_op_name_rule(op_name)


def python_op_name_rule(op_name: str) -> str:
    """tfkit's copy of TensorFlow's naming rule: `Tfkit>LayerNorm` becomes
    `tfkit_layer_norm` ('>' to '_', and a '_' where a capital follows a
    lowercase letter or starts a lowercase run)."""
    out = []
    for i, c in enumerate(op_name):
        if c == ">":
            out.append("_")
            continue
        previous = op_name[i - 1] if i else ""
        following = op_name[i + 1] if i + 1 < len(op_name) else ""
        if c.isupper() and i and previous != ">" and (previous.islower() or following.islower()):
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def op_registered(op_type: str) -> bool | None:
    """Whether this process has registered an op of this type; None when
    that can't be known."""
    lookup = get("op_registry")
    return None if lookup is None else lookup(op_type) is not None


def probe_all() -> None:
    """Runs every feature test now (each warns once if it fails)."""
    for name in FEATURES:
        _result(name)


probe_all()
