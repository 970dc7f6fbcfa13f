"""tfkit.testing.opcheck: passes good ops, reports each broken behaviour."""

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.prototype import sample_ops
from tfkit.testing import CHECKS, opcheck

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


def test_a_wrong_gradient_fails_with_the_numbers():
    with pytest.raises(AssertionError, match="gradients: numeric vs analytic gradient of input 0") as err:
        opcheck(sample_ops.wrong_grad, [X], checks=["gradients"])
    assert "opcheck wrong_grad failed 1 check" in str(err.value)


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
