"""tfkit._compat: every TensorFlow, Keras and Python internal tfkit uses has a
feature test; with one missing, `import tfkit` still works, one warning names
it, `python -m tfkit info` lists it as inactive, and what needed it degrades
as documented.

Each fake runs in a fresh interpreter, before `import tfkit`. Most internals
are also used by TensorFlow or Keras themselves, so deleting them breaks
those; `hide` fakes what a release that moved them looks like to tfkit (a
module without the name, which TensorFlow's own code no longer needs),
while `test_deleted_internals_...` deletes them outright.
"""

import json
import re
import warnings
from pathlib import Path

import pytest

import tfkit
from tests.conftest import ROOT, run_python
from tfkit import _compat

FEATURES = {
    "export_guard": "_build_meta_graph",
    "xla_context": "GraphOrParentsInXlaContext",
    "tape_check": "could_possibly_record",
    "save_context": "in_save_context",
    "keras_call_context": "current_call_ctx",
    "variable_accessed": "variable_accessed",
    "keras_dense_state": "lora_enabled",
    "keras_dense_quantize": "Dense.quantize",
    "environ_data": "os.environ._data",
    "op_names": "GetPythonWrappers",
    "op_registry": "op_def_registry.get",
    "var_mu": "Var::mu()",
    "keras_dot_product_attention": "keras.src.backend.tensorflow.nn.dot_product_attention",
    "sharded_variable": "ShardedVariable",
}

PRELUDE = '''
import importlib, json, os, sys, types, warnings

def hide(module_name, *names):
    """tfkit's view of a release that moved `names` out of the module."""
    real = importlib.import_module(module_name)
    stub = types.ModuleType(module_name)
    stub.__dict__.update({k: v for k, v in vars(real).items() if k not in names})
    sys.modules[module_name] = stub

_caught = warnings.catch_warnings(record=True)
_seen = _caught.__enter__()
warnings.simplefilter("always")

def report(**results):
    from tfkit import _compat
    messages = [str(w.message) for w in _seen if issubclass(w.category, _compat.CompatWarning)]
    print(json.dumps({"warnings": messages, "status": _compat.status(), **results}))
'''

FAKE_DENSE = '''
import keras

class Dense(keras.layers.Dense):
    """A Keras whose Dense has neither LoRA nor quantization (nor their attributes)."""

    def quantize(self, mode=None):
        raise NotImplementedError("no quantization")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.__dict__["lora_enabled"]

    @property
    def quantization_mode(self):
        raise AttributeError("quantization_mode")

    def build(self, input_shape):
        self._kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None
        self.built = True

    @property
    def kernel(self):
        return self._kernel

keras.layers.Dense = Dense
'''


def run_fake(code: str, env: dict | None = None) -> dict:
    """Runs PRELUDE + code (which ends with `report(...)`) in a fresh interpreter."""
    result = run_python(PRELUDE + code, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_off(found: dict, *names: str) -> None:
    """Exactly these features are off, each with exactly one warning naming its internal."""
    off = sorted(name for name, (on, _) in found["status"].items() if not on)
    assert off == sorted(names), found["status"]
    assert len(found["warnings"]) == len(names), found["warnings"]
    for name in names:
        internal = FEATURES[name]
        naming = [w for w in found["warnings"] if internal in w and f"({name})" in w]
        assert len(naming) == 1, (name, found["warnings"])
        assert "is off" in naming[0], naming[0]
        assert found["status"][name][1], name  # a reason


# This process: everything present -----------------------------------------


def test_every_feature_is_active_here_and_has_a_probe():
    assert set(_compat.FEATURES) == set(FEATURES)
    assert all(on for on, _ in _compat.status().values()), _compat.status()
    for name, feature in _compat.FEATURES.items():
        assert FEATURES[name] in feature.internal or FEATURES[name] in feature.name, name
        assert callable(feature.probe) and feature.enables and feature.fallback


def test_info_lists_every_feature_as_active():
    result = run_python("import sys; from tfkit_cli import main; sys.exit(main(['info']))")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"internals        {len(FEATURES)} of {len(FEATURES)} active" in result.stdout, result.stdout
    for name, feature in _compat.FEATURES.items():
        assert re.search(rf"^  {name} +active  {re.escape(feature.internal)}$", result.stdout, re.M), name
    assert "CompatWarning" not in result.stderr, result.stderr[-3000:]


def declared_op_names() -> set[str]:
    sources = Path(ROOT, "cc").rglob("*.cc")
    names = {name for path in sources for name in re.findall(r'REGISTER_OP\(\s*"([^"]+)"', path.read_text())}
    assert len(names) > 10
    return names


def test_the_op_name_rule_matches_tensorflows_generator():
    """The fallback, tfkit's copy of TensorFlow's rule, against TensorFlow's own answer."""
    generate = _compat.get("op_names")
    samples = {"Tfkit>RMSNorm", "Tfkit>GeLU", "Tfkit>Rope2D", "A>B>CdEF", "Foo_Bar", "Tfkit>IOUScore", "Plain"}
    for op_name in declared_op_names() | samples:
        assert _compat.python_op_name_rule(op_name) == _compat._generated_op_name(generate, op_name), op_name
        assert tfkit.build.python_op_name(op_name) == _compat.python_op_name_rule(op_name), op_name


def test_python_op_name_names_the_loaded_librarys_functions():
    library = tfkit.load_library()
    for op_name in declared_op_names():
        if op_name.startswith("Tfkit>"):
            assert hasattr(library, tfkit.build.python_op_name(op_name)), op_name


def test_a_feature_found_broken_where_it_is_used_warns_once(monkeypatch):
    monkeypatch.setattr(_compat, "_results", dict(_compat._results))
    with pytest.warns(_compat.CompatWarning, match=r"_build_meta_graph.*\(it returned None\).*\(export_guard\)"):
        _compat.disable("export_guard", "it returned None")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _compat.disable("export_guard", "again")
    assert _compat.status()["export_guard"] == (False, "it returned None")


# Fresh interpreters: each internal missing -------------------------------------


@pytest.fixture
def library_without_var_mu(tmp_path) -> Path:
    """The op library as compiled against a TensorFlow whose Var has no mu()."""
    built = tfkit.library_path().read_bytes()
    assert built.count(b"TFKIT_COMPAT var_mu=1;") == 1
    path = tmp_path / "_tfkit_ops.so"
    path.write_bytes(built.replace(b"TFKIT_COMPAT var_mu=1;", b"TFKIT_COMPAT var_mu=0;"))
    return path


def test_deleted_internals_leave_import_working_with_one_warning_each_and_info_lists_them(library_without_var_mu):
    found = run_fake(
        """
import tensorflow.python.saved_model.save as save; del save._build_meta_graph
import tensorflow.python.ops.control_flow_util as cfu; del cfu.GraphOrParentsInXlaContext
import tensorflow.python.eager.record as record; del record.could_possibly_record
import tensorflow.python.saved_model.save_context as save_context; del save_context.in_save_context
import tensorflow.python.ops.resource_variable_ops as rvo; del rvo.variable_accessed
import tensorflow.python.framework.op_def_registry as registry; del registry.get
import keras.src.backend.tensorflow.nn as keras_tf_nn; del keras_tf_nn.dot_product_attention
import tensorflow as tf; del tf.__internal__.distribute.ShardedVariable
hide("keras.src.backend.common.global_state", "get_global_attribute")
hide("tensorflow.python.framework._pywrap_python_op_gen", "GetPythonWrappers")
os.environ = dict(os.environ)
"""
        + FAKE_DENSE
        + """
import contextlib, io
import tfkit
from tfkit_cli import info
out = io.StringIO()
with contextlib.redirect_stdout(out):
    info()
report(info=out.getvalue())
""",
        env={"TFKIT_LIBRARY": str(library_without_var_mu)},
    )
    assert_off(found, *FEATURES)
    assert f"internals        0 of {len(FEATURES)} active" in found["info"], found["info"]
    for name, feature in _compat.FEATURES.items():
        assert re.search(rf"^  {name} +INACTIVE  {re.escape(feature.internal)}$", found["info"], re.M), name
        assert f"is off: {feature.fallback}" in found["info"], name


# A tf.Module whose `serve` runs a NumPy prototype op (the body follows).
PROTOTYPE_MODEL = """import numpy as np, tensorflow as tf, tfkit

@tfkit.prototype.op
def softclip(x):
    return np.tanh(x)

class Model(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4])])
    def serve(self, x):
"""


def test_without_the_export_guard_a_prototype_model_is_written_and_check_still_finds_it(tmp_path):
    found = run_fake(
        f"""
hide("tensorflow.python.saved_model.save", "_build_meta_graph")
hide("tensorflow.python.framework.op_def_registry", "get")
{PROTOTYPE_MODEL}        return tfkit.ops.layer_norm(softclip(x), tf.ones([4]), tf.zeros([4]), backend="compiled")

tf.saved_model.save(Model(), {str(tmp_path / "model")!r})
report_ = tfkit.saved_model.check({str(tmp_path / "model")!r})
report(callbacks=[n.op_type for n in report_.python_callbacks], custom=report_.custom_ops)
"""
    )
    assert_off(found, "export_guard", "op_registry")
    assert (tmp_path / "model" / "saved_model.pb").is_file()
    assert found["callbacks"] == ["PyFunc"]
    assert found["custom"] == {"Tfkit>LayerNorm": True}  # tfkit's library provides it


def test_without_the_save_context_saving_a_taped_prototype_fails_from_tensorflow(tmp_path):
    found = run_fake(
        f"""
hide("tensorflow.python.saved_model.save_context", "in_save_context")
{PROTOTYPE_MODEL}        with tf.GradientTape() as tape:
            tape.watch(x)
            y = softclip(x)
        return y

try:
    tf.saved_model.save(Model(), {str(tmp_path / "model")!r})
    error = None
except Exception as err:
    error = [type(err).__name__, str(err)]
report(error=error)
"""
    )
    assert_off(found, "save_context")
    name, message = found["error"]
    assert name == "ValueError" and "tracing gradients for SavedModel" in message, found["error"]
    assert not (tmp_path / "model").exists()


def test_xla_tape_keras_variable_environ_dense_and_op_names_missing_degrade_as_documented():
    found = run_fake(
        """
hide("tensorflow.python.ops.control_flow_util", "GraphOrParentsInXlaContext")
hide("tensorflow.python.eager.record", "could_possibly_record")
hide("keras.src.backend.common.global_state", "get_global_attribute")
hide("tensorflow.python.ops.resource_variable_ops", "variable_accessed")
hide("tensorflow.python.framework._pywrap_python_op_gen", "GetPythonWrappers")
os.environ = dict(os.environ)  # a mapping without _data
import keras.src.backend.tensorflow.nn as keras_tf_nn
keras_attention = keras_tf_nn.dot_product_attention
def older_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False):  # no flash_attention
    return keras_attention(query, key, value, bias=bias, mask=mask, scale=scale, is_causal=is_causal)
keras_tf_nn.dot_product_attention = older_attention
import tensorflow as tf; del tf.__internal__.distribute.ShardedVariable
"""
        + FAKE_DENSE
        + """
import numpy as np, tensorflow as tf, tfkit
from tfkit import backend

results = {}

# xla_context: never under XLA, so "auto" picks the compiled op; "reference" still compiles.
x = tf.random.stateless_normal([6, 32], seed=[1, 2])
gamma, beta = tf.ones([32]), tf.zeros([32])
seen = []
tf.function(lambda: seen.append(backend.in_xla_compilation()) or tf.constant(0), jit_compile=True)()
results["xla_seen"] = seen
xla = tf.function(lambda x: tfkit.ops.layer_norm(x, gamma, beta), jit_compile=True)
graph = xla.get_concrete_function(x).graph
results["auto_under_xla"] = sorted({op.type for op in graph.get_operations() if op.type.startswith("Tfkit>")})
reference = tf.function(lambda x: tfkit.ops.layer_norm(x, gamma, beta, backend="reference"), jit_compile=True)
results["reference_under_xla"] = float(tf.reduce_max(tf.abs(
    reference(x) - tfkit.ops.layer_norm(x, gamma, beta, backend="compiled"))))

# tape_check: an eager prototype call with grad= always takes its gradient wrapper.
def grad(dy, x, y):
    return dy * (1.0 - y * y)

@tfkit.prototype.op(grad=grad)
def softclip(x):
    return np.tanh(x)

wrapped = []
with_gradient = tfkit.prototype._Prototype._with_gradient
def counting(self, *args):
    wrapped.append(self.name)
    return with_gradient(self, *args)
tfkit.prototype._Prototype._with_gradient = counting
v = tf.constant([0.5, -1.0])
results["no_tape"] = softclip(v).numpy().tolist()
results["wrapped"] = len(wrapped)
with tf.GradientTape() as tape:
    tape.watch(v)
    y = softclip(v)
results["grad"] = tape.gradient(y, v).numpy().tolist()

# keras_call_context: a layer that calls a prototype in a traced call is not marked.
import keras

class UsesPrototype(keras.layers.Layer):
    def call(self, x):
        return softclip(x)

layer = UsesPrototype()
tf.function(layer)(tf.ones([2, 3]))
results["supports_jit"] = layer.supports_jit

# variable_accessed: the compiled bag on a tf.Variable table still gives the table a gradient.
table = tf.Variable(tf.random.stateless_normal([10, 4], seed=[3, 4]))
ids = tf.constant([[1, 2, 2], [0, 9, 3]])
def bag_gradient(backend_name):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tfkit.ops.embedding_bag(ids, table, combiner="mean", backend=backend_name) ** 2)
    return tf.convert_to_tensor(tape.gradient(loss, table))
results["bag_grad"] = float(tf.reduce_max(tf.abs(bag_gradient("compiled") - bag_gradient("reference"))))
traced = tf.function(lambda: bag_gradient("compiled"))()
results["bag_grad_traced"] = float(tf.reduce_max(tf.abs(traced - bag_gradient("reference"))))

# environ_data: TFKIT_BACKEND is still read on every call.
os.environ["TFKIT_BACKEND"] = "reference"
results["env_reference"] = backend.resolve(None)
del os.environ["TFKIT_BACKEND"]
results["env_unset"] = backend.resolve(None)

# keras_dense_state: tfkit.layers.Dense is keras.layers.Dense, unfused.
fused = []
from tfkit.layers import activation as activation_layers
bias_activation = activation_layers.activation_ops.bias_activation
activation_layers.activation_ops.bias_activation = lambda *a, **k: fused.append(1) or bias_activation(*a, **k)
dense = tfkit.layers.Dense(3, activation="relu")
inputs = tf.random.stateless_normal([2, 5], seed=[5, 6])
out = dense(inputs)
expected = tf.nn.relu(inputs @ dense.kernel + dense.bias)
results["dense"] = float(tf.reduce_max(tf.abs(out - expected)))
results["fused"] = len(fused)

# keras_dense_quantize: tfkit.layers.Dense is not quantized.
try:
    dense.quantize("int8")
    results["quantize"] = "quantized"
except NotImplementedError as err:
    results["quantize"] = str(err)

# op_names: tfkit's copy of the rule.
results["op_name"] = tfkit.build.python_op_name("Tfkit>EmbeddingBagGrad")
results["library_has_it"] = hasattr(tfkit.load_library(), results["op_name"])

# keras_dot_product_attention: use_fused_attention warns and changes nothing.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    results["routed_before"] = tfkit.use_fused_attention()
results["route_warnings"] = [str(w.message) for w in caught]
results["still_kerass"] = keras_tf_nn.dot_product_attention is older_attention

# sharded_variable: a ShardedVariable is read whole; a list of shards still goes shard by shard.
from tensorflow.python.distribute.sharded_variable import ShardedVariable
shards = [tf.Variable(tf.random.stateless_normal([3, 4], seed=[i, 5])) for i in range(2)]
ids = tf.constant([[0, 5, 2], [4, 4, 1]])
whole = tfkit.ops.embedding_bag(ids, tf.concat(shards, 0), combiner="mean")
results["sharded_variable_gap"] = float(tf.reduce_max(tf.abs(
    tfkit.ops.embedding_bag(ids, ShardedVariable(shards), combiner="mean") - whole)))
with tf.GradientTape() as tape:
    bags = tfkit.ops.embedding_bag(ids, shards, combiner="mean")
results["shard_list_gap"] = float(tf.reduce_max(tf.abs(bags - whole)))
results["shard_grads"] = [type(g).__name__ for g in tape.gradient(bags, shards)]
report(**results)
"""
    )
    assert found["sharded_variable_gap"] < 1e-6 and found["shard_list_gap"] < 1e-6
    assert found["shard_grads"] == ["IndexedSlices", "IndexedSlices"]
    assert_off(
        found,
        "sharded_variable",
        "keras_dot_product_attention",
        "xla_context",
        "tape_check",
        "keras_call_context",
        "variable_accessed",
        "environ_data",
        "keras_dense_state",
        "keras_dense_quantize",
        "op_names",
    )
    assert found["xla_seen"] == [False]
    assert found["auto_under_xla"] == ["Tfkit>LayerNorm"]  # which XLA rejects: the documented fallback
    assert found["reference_under_xla"] < 1e-4
    assert found["no_tape"] == pytest.approx([0.46211716, -0.76159416])
    assert found["wrapped"] == 1  # with the tape check, no wrapper without a tape
    assert found["grad"] == pytest.approx([0.78644773, 0.41997434])
    assert found["supports_jit"] is True
    assert found["bag_grad"] < 1e-5 and found["bag_grad_traced"] < 1e-5
    assert found["env_reference"] == "reference" and found["env_unset"] == "auto"
    assert found["dense"] < 1e-5 and found["fused"] == 0
    assert found["quantize"].startswith("Layer Dense cannot be quantized"), found["quantize"]
    assert found["op_name"] == "tfkit_embedding_bag_grad" and found["library_has_it"]
    assert found["routed_before"] is False and found["still_kerass"]
    assert len(found["route_warnings"]) == 1 and found["route_warnings"][0].startswith(
        "tfkit.use_fused_attention(True) changed nothing: this Keras's dot_product_attention is not the one tfkit "
        "knows (TypeError: dot_product_attention takes ['query', 'key', 'value', 'bias', 'mask', 'scale', "
        "'is_causal'], not ["
    ), found["route_warnings"]


def test_use_fused_attention_leaves_a_function_replaced_since_import_alone(monkeypatch):
    import keras.src.backend.tensorflow.nn as keras_tf_nn

    monkeypatch.setattr(_compat, "_results", dict(_compat._results))

    def other(*args, **kwargs):
        return None

    monkeypatch.setattr(keras_tf_nn, "dot_product_attention", other)
    with pytest.warns(_compat.CompatWarning) as caught:
        assert tfkit.use_fused_attention() is False
    assert keras_tf_nn.dot_product_attention is other
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "(it was replaced by <function" in messages[0] and "(keras_dot_product_attention)" in messages[0]
    assert messages[1].startswith("tfkit.use_fused_attention(True) changed nothing"), messages[1]


def test_with_everything_present_the_same_checks_see_the_features_on():
    """The counterpart of the test above: what it sees off is on here."""
    found = run_fake(
        """
import numpy as np, tensorflow as tf, tfkit, keras
from tfkit import backend

seen = []
tf.function(lambda: seen.append(backend.in_xla_compilation()) or tf.constant(0), jit_compile=True)()

@tfkit.prototype.op(grad=lambda dy, x, y: dy)
def softclip(x):
    return np.tanh(x)

wrapped = []
with_gradient = tfkit.prototype._Prototype._with_gradient
tfkit.prototype._Prototype._with_gradient = lambda self, *a: wrapped.append(1) or with_gradient(self, *a)
softclip(tf.constant([0.5]))
eager_wrapped = len(wrapped)

class UsesPrototype(keras.layers.Layer):
    def call(self, x):
        return softclip(x)

layer = UsesPrototype()
tf.function(layer)(tf.ones([2, 3]))

fused = []
from tfkit.layers import activation as activation_layers
bias_activation = activation_layers.activation_ops.bias_activation
activation_layers.activation_ops.bias_activation = lambda *a, **k: fused.append(1) or bias_activation(*a, **k)
dense = tfkit.layers.Dense(3, activation="relu")
dense(tf.ones([2, 5]))
dense.quantize("int8")
report(xla_seen=seen, wrapped=eager_wrapped, supports_jit=layer.supports_jit, fused=len(fused),
       quantized=dense.dtype_policy.name)
"""
    )
    assert_off(found)
    assert found["xla_seen"] == [True] and found["wrapped"] == 0
    assert found["supports_jit"] is False and found["fused"] == 1
    assert found["quantized"] == "int8_from_float32"


def test_compat_imports_no_internal_at_the_call_sites():
    """Only tfkit/_compat.py reaches into TensorFlow's and Keras's internals."""
    pattern = re.compile(r"tensorflow\.python|keras\.src|environ\._data|\"_data\"|lora_enabled|quantization_mode")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(Path(ROOT, "tfkit").rglob("*.py"))
        if path.name != "_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == [], offenders


def test_without_var_mu_a_variable_table_is_read_by_value_with_the_same_results(library_without_var_mu):
    found = run_fake(
        """
import numpy as np, tensorflow as tf, tfkit
table = tf.Variable(np.arange(12.0, dtype=np.float32).reshape(4, 3))
ids = tf.ragged.constant([[0, 3], [1]])
with tf.GradientTape() as tape:
    bags = tfkit.ops.embedding_bag(ids, table, backend="compiled")
    loss = tf.reduce_sum(bags * bags)
grad = tf.convert_to_tensor(tape.gradient(loss, table))
want = tfkit.ops.embedding_bag(ids, table.value(), backend="reference")
report(bags=bags.numpy().tolist(), want=want.numpy().tolist(), grad=grad.numpy().tolist())
""",
        env={"TFKIT_LIBRARY": str(library_without_var_mu)},
    )
    assert_off(found, "var_mu")
    assert found["bags"] == found["want"] == [[9.0, 11.0, 13.0], [3.0, 4.0, 5.0]]
    assert found["grad"][3] == [18.0, 22.0, 26.0]
