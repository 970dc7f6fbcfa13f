"""Every raw op of tfkit's library and its grad op, fuzzed: see check.py for
the property, cases.py for the cases and specs.py for the table of ops.

FUZZ_EXAMPLES sets the number of cases per op (default 200; a failure's
shrinking runs more). Hypothesis runs derandomized (the same cases on
every run) and keeps no example database.
"""

from __future__ import annotations

import collections
import os
import time

import pytest
from hypothesis import HealthCheck, given, note, settings

from tests.fuzz import cases, check, repro
from tests.fuzz.specs import SPECS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.op)
def test_raw_op(spec, record_property):
    outcomes: collections.Counter = collections.Counter()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases.cases(spec))
    def holds(case):
        inputs = check.Inputs(case)
        note(f"{case!r}\nTo repeat it:\n{repro.script(case, inputs)}")
        try:
            outcomes[check.holds(case, inputs)] += 1
        except check.FuzzFailure as failure:
            outcomes[type(failure).__name__] += 1
            raise

    start = time.perf_counter()
    failed = True
    try:
        holds()
        failed = False
    finally:
        row = {"op": spec.op, "outcomes": dict(outcomes), "seconds": time.perf_counter() - start, "failed": failed}
        record_property("fuzz", row)
