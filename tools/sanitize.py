"""`make sanitize`: tfkit's own op library built with AddressSanitizer and
UndefinedBehaviorSanitizer (through tfkit.build), and the op tests and the
fuzz suite (tests/fuzz, FUZZ_EXAMPLES cases per op) run against it in a
process started with the sanitizer runtimes preloaded. Any report fails the
run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/ops", "tests/fuzz"]
# The fuzz suite asks for outputs too large to allocate: a request over 8 GiB
# fails (TensorFlow then raises ResourceExhausted) instead of ASan stopping
# the process, or the machine running out of memory.
ALLOCATION_OPTIONS = "allocator_may_return_null=1:max_allocation_size_mb=8192"
# A report is written to file descriptor 2 by the process it then stops:
# pytest captures only Python's streams (its file-descriptor capture would
# lose the report with the process).
PYTEST_OPTIONS = ["-q", "-m", "not slow", "--capture=sys"]


def main() -> int:
    import tfkit.build

    library = tfkit.build.compile_layout(ROOT, "_tfkit_ops", sanitize=True, build_dir=ROOT / "build" / "sanitize")
    env = {**os.environ, **tfkit.build.sanitizer_env(), "TFKIT_LIBRARY": str(library)}
    env["ASAN_OPTIONS"] = f"{env['ASAN_OPTIONS']}:{ALLOCATION_OPTIONS}"
    # Each fuzz process writes the case it runs there; a report leaves it.
    cases = ROOT / "build" / "sanitize" / "fuzz-cases"
    shutil.rmtree(cases, ignore_errors=True)
    cases.mkdir(parents=True)
    env["FUZZ_CASE_DIR"] = str(cases)
    # A report stops a worker, and the run (pyproject.toml: no worker restarts).
    command = [sys.executable, "-m", "pytest", *PYTEST_OPTIONS, *sys.argv[1:], *TESTS]
    print(f"sanitized library: {library}\nrunning: {' '.join(command)}", flush=True)
    code = subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
    for stopped in sorted(cases.glob("*.py")):
        print(f"\nA process stopped while running this fuzz case ({stopped}):\n{stopped.read_text()}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
