"""tfkit.testing.opcheck: passes good ops, reports each broken behaviour."""

import sys
import types

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.prototype import sample_ops
from tfkit.testing import CHECKS, opcheck
from tfkit.tolerances import TOLERANCES

X = tf.constant(np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32))


def statuses(report):
    return {name: r.status for name, r in report.results.items()}


def test_norm_op_passes_every_check_with_bad_inputs():
    gamma, beta = tf.random.normal([5]), tf.random.normal([5])
    report = opcheck(
        tfkit.ops.layer_norm,
        [X, gamma, beta],
        {"epsilon": 1e-3},
        bad_inputs=[([tf.ones([2, 5]), tf.ones([4]), tf.ones([5])], {}), ([X, gamma, beta], {"epsilon": 0.0})],
    )
    assert set(statuses(report).values()) == {"passed"}, report
    assert "fresh process" in report["saved_model"].detail and list(report) == list(CHECKS)
    assert "2 bad argument sets" in report.results["bad_inputs"].detail


def test_prototype_with_grad_and_its_refusals():
    report = opcheck(sample_ops.softclip, [X], {"limit": 2.0}, reference=lambda x, limit: 2.0 * tf.tanh(x / 2.0))
    assert statuses(report) == {
        "static_shapes": "passed",
        "eager_vs_graph": "passed",
        "reference": "passed",
        "gradients": "passed",
        "xla": "passed",
        "saved_model": "passed",
        "bad_inputs": "skipped",
        "threads": "passed",
    }, report
    assert "refused cleanly" in report.results["xla"].detail
    assert "refused cleanly" in report.results["saved_model"].detail


def test_an_op_with_a_reference_and_a_prototype_compares_them():
    report = opcheck(sample_ops.cube, [X], checks=["reference", "gradients", "xla"])
    assert statuses(report) == {"reference": "passed", "gradients": "passed", "xla": "passed"}
    assert report.results["reference"].detail == "against its prototype"
    assert "its prototype defines no gradient" in report.results["gradients"].detail


def gradient_weights(shape):
    """The weights opcheck's numeric gradients sum the outputs with."""
    return np.random.default_rng(11).normal(size=shape)


def test_a_wrong_gradient_fails_with_the_error_and_the_tolerance():
    # y = 2x with the gradient 3 dy: the numeric Jacobian is 2w, the analytic 3w.
    with pytest.raises(AssertionError, match=r"gradients: numeric \(finite-difference\) vs analytic Jacobian") as err:
        opcheck(sample_ops.wrong_grad, [X], checks=["gradients"])
    assert "opcheck wrong_grad failed 1 check" in str(err.value)
    weights = np.abs(gradient_weights(X.shape))
    worst = [int(i) for i in np.unravel_index(weights.argmax(), weights.shape)]
    error, largest, rtol = weights.max(), 2 * weights.max(), TOLERANCES[tf.float64].gradient
    assert err.value.report["gradients"].detail == (
        f"numeric (finite-difference) vs analytic Jacobian of input 0 differs at 15 of 15 elements (max abs error "
        f"{error:.3g} at {worst}, rtol 0, atol {rtol * largest:.3g}); atol = the gradient rtol {rtol:.3g} x max(1, "
        f"the largest numeric derivative {largest:.3g}) (float64)"
    )


def test_a_wrong_gradient_of_a_large_input_fails_with_the_directional_derivatives():
    x = tf.ones([48, 48])  # over 2048 elements: directional derivatives
    report = opcheck(sample_ops.wrong_grad, [x], checks=["gradients"], raise_on_failure=False)
    along = np.sum(gradient_weights(x.shape) * np.random.default_rng(100).normal(size=x.shape))
    numeric, analytic, rtol = 2 * along, 3 * along, TOLERANCES[tf.float64].gradient
    assert report["gradients"].detail == (
        f"numeric (finite-difference) vs analytic derivative of inputs [0] along random direction 0 ({numeric:.6g} "
        f"vs {analytic:.6g}) differs at 1 of 1 elements (max abs error {abs(along):.3g}, rtol 0, atol "
        f"{rtol * abs(numeric):.3g}); atol = the gradient rtol {rtol:.3g} x max(1, |the numeric derivative| "
        f"{abs(numeric):.3g}) (float64)"
    )


def test_an_op_whose_module_the_fresh_process_cannot_import_says_to_pass_imports(monkeypatch):
    # As tf.load_op_library's modules (named by a hash): importable only in the process that made them.
    module = types.ModuleType("opcheck_test_6ebaab55")
    monkeypatch.setitem(sys.modules, module.__name__, module)

    def double(x):
        return 2.0 * x

    double.__module__, module.double = module.__name__, double
    report = opcheck(double, [X], checks=["saved_model", "bad_inputs"], bad_inputs=[([X], {})], raise_on_failure=False)
    detail = (
        "the fresh process could not import 'opcheck_test_6ebaab55' (ModuleNotFoundError: No module named "
        "'opcheck_test_6ebaab55'): pass imports=[a module that loads the library], the modules the fresh process "
        "imports besides tfkit so that the op is registered there (by default the op's own module, which for an op "
        "from tf.load_op_library or tfkit.build.load_inline is named by a hash and exists only in the process that "
        "loaded the library)"
    )
    assert statuses(report) == {"saved_model": "failed", "bad_inputs": "failed"}
    assert report["saved_model"].detail == report["bad_inputs"].detail == detail


def test_a_wrong_result_fails_the_reference_check():
    with pytest.raises(AssertionError, match="reference: against the given reference: output 0 differs"):
        opcheck(sample_ops.cube, [X], reference=lambda x: x**3 + 1e-2, checks=["reference"])


def test_bad_inputs_that_do_not_raise_invalid_argument_fail():
    with pytest.raises(AssertionError, match="bad inputs did not raise InvalidArgumentError"):
        opcheck(sample_ops.softclip, [X], checks=["bad_inputs"], bad_inputs=[([np.ones([2], np.float32)], {})])


def test_a_prototype_that_validates_passes_bad_inputs():
    report = opcheck(
        sample_ops.checked_scale, [X], checks=["bad_inputs"], bad_inputs=[([np.float32(1.0)], {"factor": 2.0})]
    )
    assert statuses(report) == {"bad_inputs": "passed"}


def test_unknown_check_names_are_refused():
    with pytest.raises(ValueError, match="unknown checks"):
        opcheck(tfkit.ops.rms_norm, [X, tf.ones([5])], checks=["speed"])
    assert len(CHECKS) == 8


def test_plain_callables_are_checked_too():
    report = opcheck(lambda x: tf.nn.softplus(x), [X], reference=lambda x: tf.math.log1p(tf.exp(x)))
    assert report.results["bad_inputs"].status == "skipped"
    assert report.results["saved_model"].status == "passed"
    assert report.results["gradients"].status == "passed"


def failed_report(op, args, **options):
    """The report of an opcheck that must fail: raised, and returned alike."""
    with pytest.raises(AssertionError, match=r"opcheck \S+ failed 1 check\(s\)") as err:
        opcheck(op, args, **options)
    report = opcheck(op, args, raise_on_failure=False, **options)
    assert statuses(err.value.report) == statuses(report)
    return report


# gradients: an exception inside a gradient is a failure, not "no gradient" --


@pytest.mark.parametrize(
    "op,error",
    [
        (sample_ops.doubles_with_keyerror_grad, "KeyError: 'input'"),
        (sample_ops.doubles_with_indexerror_grad, "IndexError"),
    ],
)
def test_a_lookup_error_inside_the_gradient_fails(op, error):
    report = failed_report(op, [X], checks=["gradients"])
    assert statuses(report) == {"gradients": "failed"}, report
    assert report["gradients"].detail.startswith(f"differentiating the op raised {error}"), report


def test_a_lookup_error_inside_the_references_gradient_fails():
    report = failed_report(
        sample_ops.softclip, [X], reference=sample_ops.doubles_with_keyerror_grad, checks=["gradients"]
    )
    assert "the gradient of the given reference raised KeyError: 'input'" in report["gradients"].detail, report


def test_no_gradient_is_a_skip_with_the_reason():
    report = opcheck(sample_ops.double_no_grad, [X], checks=["gradients"])
    assert statuses(report) == {"gradients": "skipped"}
    assert "the op defines no gradient (double_no_grad has no gradient" in report["gradients"].detail
    # TensorFlow's registry without a gradient for an op the function uses, and a None from the tape.
    report = opcheck(lambda x: tf.raw_ops.Unique(x=tf.reshape(x, [-1]))[0], [X], checks=["gradients"])
    assert statuses(report) == {"gradients": "skipped"}
    assert "gradient registry has no entry for: Unique" in report["gradients"].detail
    report = opcheck(lambda x: 2.0 * tf.stop_gradient(x), [X], checks=["gradients"])
    assert statuses(report) == {"gradients": "skipped"}
    assert "the tape gave no gradient for float input(s) [0]" in report["gradients"].detail


# xla: only XLAUnsupportedError is a clean refusal --------------------------


def test_another_error_mentioning_xla_fails_the_xla_check():
    report = failed_report(sample_ops.xla_unaware, [X], checks=["xla"])
    assert statuses(report) == {"xla": "failed"}
    assert "RuntimeError: XLA compilation hit an unsupported path" in report["xla"].detail
    # XLA's own refusal of a Python callback is no clean refusal either.
    report = failed_report(lambda x: tf.numpy_function(np.tanh, [x], tf.float32), [X], checks=["xla"])
    assert "InvalidArgumentError: Detected unsupported operations" in report["xla"].detail


def test_a_prototype_under_xla_is_refused_cleanly():
    report = opcheck(sample_ops.double_no_grad, [X], checks=["xla"])
    assert statuses(report) == {"xla": "passed"}
    assert report["xla"].detail == "refused cleanly: XLAPrototypeError"


# static_shapes: unknown rank is refused cleanly or it is a failure ------------


@pytest.mark.parametrize(
    "op,error",
    [
        (sample_ops.repeat_last, "ValueError: Cannot iterate over a shape with unknown rank"),
        (sample_ops.rowsum_crashes, "TypeError: unsupported operand"),
    ],
)
def test_a_crash_on_unknown_rank_fails_static_shapes(op, error):
    report = failed_report(op, [X], checks=["static_shapes", "eager_vs_graph"])
    assert statuses(report) == {"static_shapes": "failed", "eager_vs_graph": "passed"}, report
    assert f"traced with unknown rank inputs, the op raised {error}" in report["static_shapes"].detail


def test_a_clean_refusal_of_unknown_rank_passes_and_says_so():
    report = opcheck(sample_ops.rowsum, [X], checks=["static_shapes"])
    assert statuses(report) == {"static_shapes": "passed"}
    assert report["static_shapes"].detail == "unknown rank refused: rowsum needs x with a known rank"


# gradients: no silent loosening when float64 fails ---------------------------


def test_an_error_in_float64_that_is_not_a_dtype_refusal_fails():
    # Its float32 gradient is 1% off as well, which the old fallback (rtol 3e-2) let pass.
    report = failed_report(sample_ops.broken_in_float64, [X], checks=["gradients"])
    assert statuses(report) == {"gradients": "failed"}
    detail = report["gradients"].detail
    assert detail.startswith("in float64 the op raised PrototypeError"), detail
    assert "RuntimeError: the float64 kernel table is empty" in detail
    assert detail.endswith("which is not a dtype refusal"), detail


def test_an_op_refusing_float64_is_checked_in_float32_and_says_so():
    report = opcheck(sample_ops.float32_sin, [X], checks=["gradients"])
    assert statuses(report) == {"gradients": "passed"}
    rtol = TOLERANCES[tf.float32].gradient
    assert f"(float32 at rtol {rtol:g}, as the op refuses float64: " in report["gradients"].detail
    assert "TypeError: x must be float32, got float64" in report["gradients"].detail


def test_a_1_percent_wrong_float32_gradient_fails():
    report = failed_report(sample_ops.float32_double_grad_1pct_off, [X], checks=["gradients"])
    rtol = TOLERANCES[tf.float32].gradient
    assert report["gradients"].detail.startswith("numeric (finite-difference) vs analytic Jacobian of input 0 differs")
    tolerance = f"; atol = the gradient rtol {rtol:.3g} x max(1, the largest numeric derivative"
    assert tolerance in report["gradients"].detail
    assert "as the op refuses float64" in report["gradients"].detail


def test_a_gradient_wrong_in_float64_only_fails():
    report = failed_report(sample_ops.grad_wrong_in_float64, [X], checks=["gradients"])
    assert "numeric (finite-difference) vs analytic Jacobian of input 0 differs" in report["gradients"].detail
    assert report["gradients"].detail.endswith("(float64)")


# one tolerance table ----------------------------------------------------------


def test_one_tolerance_table_serves_opcheck_and_the_tests():
    from tests import conftest

    assert tfkit.testing.TOLERANCES is TOLERANCES
    for name, row in TOLERANCES.items():
        assert conftest.TOLERANCES[tf.as_dtype(name)] == row.numpy == TOLERANCES[tf.as_dtype(name)].numpy
    assert TOLERANCES[tf.float64].reference == (1e-7, 1e-7) and TOLERANCES[tf.float64].numpy == (1e-10, 1e-10)
    assert TOLERANCES[tf.float32].gradient < 1e-2  # a 1% error fails


def test_an_op_that_raises_fails_every_check_that_runs_it():
    report = opcheck(sample_ops.lookup, [X], raise_on_failure=False)
    assert statuses(report) == {
        "static_shapes": "failed",
        "eager_vs_graph": "failed",
        "reference": "failed",
        "gradients": "failed",
        "xla": "passed",  # refused cleanly before it runs
        "saved_model": "failed",
        "bad_inputs": "skipped",  # none given: it doesn't run the op
        "threads": "failed",
    }, report
    for name, result in report.failed.items():
        assert "raised KeyError: 'missing'" in result.detail, (name, result.detail)


# a function of a loaded op library, called bare ---------------------------


def test_a_library_function_bare_passes_its_shape_functions_refusals():
    """In a graph TensorFlow raises a shape function's InvalidArgument as a
    ValueError: accepted with the eager message, any other ValueError fails.
    The function's module (tf.load_op_library's, named by a hash) is not
    imported in the fresh process: loading the library makes it."""
    bias_activation = tfkit._loader.load_library().tfkit_bias_activation
    bias = tf.ones([5])
    short_bias = ([X, np.ones([4], np.float32)], {})  # the shape function's refusal
    unknown_activation = ([X, np.ones([5], np.float32)], {"activation": "nope"})  # the op def's, in the graph
    report = opcheck(
        bias_activation,
        [X, bias],
        checks=["saved_model", "bad_inputs"],
        bad_inputs=[short_bias, unknown_activation],
        raise_on_failure=False,
    )
    assert report["saved_model"].detail == "loaded and run in a fresh process importing ['tfkit']"
    problems = report["bad_inputs"].detail.removeprefix("bad inputs did not raise InvalidArgumentError: ")
    assert problems.startswith("['graph: ValueError: Attr \\'activation\\' of \\'Tfkit>BiasActivation\\' Op passed")
    assert problems.count("graph:") == 1 and "bias must have shape" not in problems, problems
