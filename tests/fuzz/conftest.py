"""The fuzz suite's report (cases run per op, what they came to, and the time);
a hang's message past pytest's output capture; the file of the running case
(FUZZ_CASE_DIR) removed when the process ends as it should."""

from __future__ import annotations

_ROWS: list[dict] = []


def pytest_configure(config):
    from tests.fuzz import check

    def stop_capturing():
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=False)

    check.BEFORE_HANG_MESSAGE.append(stop_capturing)


def pytest_unconfigure(config):
    from tests.fuzz import check

    path = check.case_file()
    if path is not None:
        path.unlink(missing_ok=True)  # this process ended: no case stopped it


def pytest_runtest_logreport(report):
    # In the controlling process too under pytest-xdist: the workers send
    # each test's report, user properties included.
    if report.when == "call":
        _ROWS.extend(value for name, value in report.user_properties if name == "fuzz")


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fuzz: cases per raw op")
    total_cases, total_seconds = 0, 0.0
    for row in sorted(_ROWS, key=lambda r: r["op"]):
        cases = sum(row["outcomes"].values())
        total_cases += cases
        total_seconds += row["seconds"]
        outcomes = ", ".join(f"{kind} {count}" for kind, count in sorted(row["outcomes"].items()))
        failed = "  FAILED" if row.get("failed") else ""
        write(f"{row['op']:<32} {cases:>6} cases {row['seconds']:>7.1f} s  ({outcomes}){failed}")
    write(f"{'all ' + str(len(_ROWS)) + ' ops':<32} {total_cases:>6} cases {total_seconds:>7.1f} s")
