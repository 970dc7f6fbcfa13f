"""Keras's own tests of the layers tfkit replaces, run against tfkit's drop-ins.

Each suite in the installed keras wheel runs twice, in its own pytest
process (tests/layers/keras_suites.py): once as Keras ships it, which gives
the tests Keras's own layer passes here, and once with tfkit's classes in
place of Keras's. Every test that passes with Keras's layer must pass with
tfkit's. (About 5 min in all on two busy cores.)
"""

import collections

import pytest

import tfkit
from tests.layers.keras_suites import DROP_INS, SUITES, run_suites, suite_of

# No suite may shrink below what it held when it joined (Keras's wheel is pinned).
FEWEST_TESTS = {"layer_normalization": 7, "rms_normalization": 4, "dense": 72, "multi_head_attention": 50}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    return {layers: run_suites(layers, list(SUITES), tmp_path_factory.mktemp(layers)) for layers in ("keras", "tfkit")}


def ids_in(run: dict, suite: str) -> list[str]:
    return [test for test in run["collected"] if suite_of(test) == suite]


def passed(run: dict, suite: str) -> set[str]:
    return {test for test in ids_in(run, suite) if run["outcomes"].get(test) == "passed"}


@pytest.mark.parametrize("suite", SUITES)
def test_the_baseline_runs_the_whole_suite_with_keras_layers(runs, suite):
    baseline = runs["keras"]
    tests = ids_in(baseline, suite)
    assert len(tests) >= FEWEST_TESTS[suite], tests
    assert set(tests) <= set(baseline["outcomes"]), "every collected test has an outcome"
    outcomes = collections.Counter(baseline["outcomes"][test] for test in tests)
    assert outcomes["passed"] == len(tests) - outcomes["failed"] - outcomes["skipped"] > 0, outcomes
    for name, qualified in baseline["swapped"][suite].items():
        assert qualified.startswith("keras.src.layers.") and qualified.endswith(f".{name}"), qualified
    assert not baseline["created"] and not baseline["fused"]


@pytest.mark.parametrize("suite", SUITES)
def test_tfkit_layers_pass_every_test_keras_layers_pass(runs, suite):
    baseline, swapped = runs["keras"], runs["tfkit"]
    assert ids_in(swapped, suite) == ids_in(baseline, suite)
    for name, qualified in swapped["swapped"][suite].items():
        drop_in = getattr(tfkit.layers, DROP_INS[name][0])
        assert qualified == f"{drop_in.__module__}.{drop_in.__qualname__}", qualified
    expected = passed(baseline, suite)
    unused = sorted(test for test in expected if not swapped["created"].get(test))
    assert unused == [], "these tests made no tfkit layer"
    failing = sorted(expected - passed(swapped, suite))
    errors = "\n\n".join(f"{test}\n{swapped['errors'].get(test, swapped['outcomes'].get(test))}" for test in failing)
    assert failing == [], f"{len(failing)} of Keras's tests pass with Keras's layer and fail with tfkit's:\n{errors}"
    assert sum(swapped["fused"].get(test, 0) for test in expected) > 0, "tfkit's fused op never ran"
