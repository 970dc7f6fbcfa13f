"""docs/troubleshooting.md: each quoted message is what TensorFlow or Keras
print in that situation, and each fix the page gives works.

The quotes are read from the page (`<!-- error:NAME -->` before a code
block), and so is the code of the fixes (`<!-- run:NAME -->`). A quote's
`...` stands for text that varies: the rest must appear in that order.
"""

import json
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import ROOT
from tests.tools.test_build import SCALE_OP

PAGE = ROOT / "docs" / "troubleshooting.md"

WITHOUT_TFKIT = """
import sys
import traceback

import keras
import tensorflow as tf

tf.ones([1]) + 1  # starts the devices, as any model would
print("=== saved_model", flush=True)
try:
    tf.saved_model.load("served")
except Exception:
    traceback.print_exc()
print("=== keras", flush=True)
try:
    keras.models.load_model("model.keras")
except Exception:
    traceback.print_exc()
print("=== fixed", "tfkit imported before:", "tfkit" in sys.modules, flush=True)
"""

STARTUP_AND_AUTOGRAPH = """
import tensorflow as tf

x = tf.ones([2]) + 1
add, sub = tf.function(lambda x: x + 1), tf.function(lambda x: x - 1)
add(x)
add, sub = tf.function(lambda x: x + 1, autograph=False), tf.function(lambda x: x - 1, autograph=False)
add(x)
tf.get_logger().setLevel("ERROR")
add, sub = tf.function(lambda x: x + 1), tf.function(lambda x: x - 1)
add(x)
print("=== end", flush=True)
"""

MODEL_INPUT = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)

PRINT_OUTPUTS = f"""
import json
x = tf.constant({MODEL_INPUT.tolist()!r})
print("OUTPUTS", json.dumps({{"served": served.serve(x).numpy().tolist(), "keras": model(x).numpy().tolist()}}))
"""


def marked_block(kind: str, name: str) -> str:
    """The code block after `<!-- kind:name -->` in the page."""
    match = re.search(rf"<!-- {kind}:{name} -->\n```\w*\n(.*?)\n```", PAGE.read_text(), re.S)
    assert match, f"docs/troubleshooting.md has no {kind}:{name} block"
    return match.group(1)


def quote(name: str) -> str:
    return marked_block("error", name)


def assert_printed(quoted: str, printed: str) -> None:
    """Every part of `quoted` between `...` elisions appears in `printed`, in order."""
    position = 0
    for fragment in quoted.split("..."):
        found = printed.find(fragment, position)
        assert found >= 0, f"not printed (after position {position}): {fragment!r}\n--- printed:\n{printed[-4000:]}"
        position = found + len(fragment)


def exception_text(err: BaseException) -> str:
    """What Python prints for `err` below its traceback."""
    return "".join(traceback.format_exception_only(err))


def section(printed: str, name: str) -> str:
    return printed.split(f"=== {name}\n")[1].split("\n=== ")[0]


def start_python(script: Path, log_level: str) -> subprocess.Popen:
    """Runs `script` in a fresh interpreter, oneDNN on so that its line is printed on every CPU."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": log_level, "TF_ENABLE_ONEDNN_OPTS": "1"}
    return subprocess.Popen(
        [sys.executable, script.name],
        cwd=script.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    printed, _ = process.communicate(timeout=300)
    assert process.returncode == 0, printed[-4000:]
    return printed


def write_script(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.write_text(code)
    return path


def write_model_files(folder: Path) -> np.ndarray:
    """A model with a tfkit layer, exported and saved as the page says; returns its output."""
    model = keras.Sequential([keras.Input([8]), tfkit.layers.LayerNorm(backend="compiled"), tfkit.layers.Dense(4)])
    model.export(str(folder / "served"))
    model.save(folder / "model.keras")
    return model(MODEL_INPUT).numpy()


@dataclass
class Printed:
    startup: str  # TF_CPP_MIN_LOG_LEVEL=0: import, a first op, lambdas
    loads: str  # TF_CPP_MIN_LOG_LEVEL=2: both loads without tfkit, then the page's import-first block
    expected: np.ndarray  # the model's output in this process


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> Printed:
    """Two fresh processes, run side by side, both with TF_ENABLE_ONEDNN_OPTS=1."""
    folder = tmp_path_factory.mktemp("troubleshooting")
    startup = start_python(write_script(folder, "startup.py", STARTUP_AND_AUTOGRAPH), "0")
    expected = write_model_files(folder)
    loads = WITHOUT_TFKIT + marked_block("run", "import-first") + PRINT_OUTPUTS
    return Printed(finish(startup), finish(start_python(write_script(folder, "loads.py", loads), "2")), expected)


def test_a_saved_model_with_tfkit_ops_needs_tfkit_imported(printed):
    assert_printed(quote("op-not-registered"), section(printed.loads, "saved_model"))
    assert "tfkit imported before: False" in printed.loads


def test_a_keras_file_with_tfkit_layers_needs_tfkit_imported(printed):
    assert_printed(quote("keras-class"), section(printed.loads, "keras"))


def test_importing_tfkit_first_loads_both(printed):
    outputs = json.loads(printed.loads.split("OUTPUTS ")[1])
    for name in ("served", "keras"):
        np.testing.assert_allclose(outputs[name], printed.expected, rtol=1e-5, atol=1e-6)


def startup_lines_printed(printed: str) -> list[str]:
    """The quoted start-up lines this machine printed (each recognised by
    its longest literal part), each checked against the quote."""
    shown = []
    for line in quote("startup").splitlines():
        key = max(line.split("..."), key=len)[:25]
        if key in printed:
            assert_printed(line, printed)
            shown.append(line)
    return shown


# Lines printed while TensorFlow's libraries load, before it reads TF_CPP_MIN_LOG_LEVEL.
BEFORE_THE_LOG_LEVEL = ("absl::InitializeLog", "cudart_stub.cc", "port.cc")


def test_startup_lines_are_quoted_as_printed_and_what_hides_them(printed):
    assert_printed(quote("onednn"), printed.startup)  # forced on by TF_ENABLE_ONEDNN_OPTS=1
    assert_printed(quote("onednn"), printed.loads)  # TF_CPP_MIN_LOG_LEVEL=2 does not hide it
    for line in startup_lines_printed(printed.startup):
        last_part = line.split("...")[-1]
        if any(early in line for early in BEFORE_THE_LOG_LEVEL) or line.startswith("E"):
            assert last_part in printed.loads, f"TF_CPP_MIN_LOG_LEVEL=2 hid {line!r}"
        else:
            assert last_part not in printed.loads, f"TF_CPP_MIN_LOG_LEVEL=2 did not hide {line!r}"


def test_two_lambdas_on_one_line_warn_unless_autograph_is_off_or_the_logger_quiet(printed):
    assert_printed(quote("autograph-lambda"), printed.startup)
    assert printed.startup.count("AutoGraph could not transform") == 1


def layer_norm_inputs():
    return tf.random.normal([4, 8]), tf.random.normal([8]), tf.random.normal([8])


def second_order_function(backend_argument: str):
    """The page's second-order block as a function of x, gamma and beta,
    with its `backend="reference"` argument replaced."""
    block = marked_block("run", "second-order")
    assert block.count(', backend="reference"') == 1
    block = block.replace(', backend="reference"', backend_argument)
    body = "".join(f"    {line}\n" for line in block.splitlines())
    namespace = {"tf": tf, "tfkit": tfkit}
    exec(f"def second_order(x, gamma, beta):\n{body}    return d_penalty\n", namespace)
    return namespace["second_order"]


def test_a_second_order_gradient_through_the_compiled_ops():
    inputs = layer_norm_inputs()
    compiled = second_order_function(', backend="compiled"')
    with pytest.raises(LookupError) as eager:
        compiled(*inputs)
    assert_printed(quote("gradient-registry-second-order"), exception_text(eager.value))
    with pytest.raises(LookupError) as traced:
        tf.function(compiled, autograph=False)(*inputs)
    assert_printed(quote("gradient-registry-second-order"), exception_text(traced.value))

    on_the_reference = second_order_function(', backend="reference"')(*inputs).numpy()
    under_xla = tf.function(second_order_function(""), jit_compile=True, autograph=False)(*inputs).numpy()
    assert np.all(np.isfinite(on_the_reference)) and np.abs(on_the_reference).max() > 1e-3
    np.testing.assert_allclose(under_xla, on_the_reference, rtol=1e-4, atol=1e-4)


def xla_error_of(call) -> str:
    """The message of compiling `normalize`, which calls `call`, with XLA."""

    @tf.function(jit_compile=True)
    def normalize(x):
        return call(x)

    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        normalize(tf.random.normal([4, 8]))
    return exception_text(err.value)


def test_a_raw_compiled_op_under_jit_compile():
    x, gamma, beta = layer_norm_inputs()
    library = tfkit.load_library()

    def raw(x):
        return library.tfkit_layer_norm(x, gamma, beta, epsilon=1e-5, U=tf.float32)[0]

    assert_printed(quote("xla-unsupported"), xla_error_of(raw))

    @tf.function(jit_compile=True)
    def normalize(x):
        return tfkit.ops.layer_norm(x, gamma, beta)

    expected = tfkit.ops.layer_norm(x, gamma, beta, backend="compiled")
    np.testing.assert_allclose(normalize(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_an_op_of_ones_own_without_gradient_or_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("TFKIT_CACHE_DIR", str(tmp_path / "cache"))
    demo = tfkit.build.load_inline("demo_ops", SCALE_OP.replace("BuildTest>", "Demo>"))
    x = tf.constant([[1.0, -2.0, 3.0]])

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = demo.demo_scale(x, factor=3.0)
        return tape.gradient(y, x)

    with pytest.raises(LookupError) as err:
        gradient()
    assert exception_text(err.value) == quote("gradient-registry") + "\n"
    exec(marked_block("run", "register-gradient"), {"tf": tf})
    np.testing.assert_array_equal(gradient().numpy(), np.full([1, 3], 3.0))

    own_op_quote = quote("xla-unsupported").replace("Tfkit>LayerNorm", "Demo>Scale")
    assert_printed(own_op_quote, xla_error_of(lambda x: demo.demo_scale(x, factor=3.0)))
    namespace = {"tf": tf, "tfkit": tfkit, "demo": demo}
    exec(marked_block("run", "declare-reference"), namespace)
    np.testing.assert_array_equal(namespace["normalize"](x).numpy(), 3 * x.numpy())
    scale = namespace["scale"]
    assert scale.choose() == "compiled"
    np.testing.assert_array_equal(scale(x, factor=3.0).numpy(), 3 * x.numpy())
