"""`make sanitize`: tfkit's own op library built with AddressSanitizer and
UndefinedBehaviorSanitizer (through tfkit.build), and the op tests run against
it in a process started with the sanitizer runtimes preloaded. Any report
fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/ops"]


def main() -> int:
    import tfkit.build

    library = tfkit.build.compile_layout(ROOT, "_tfkit_ops", sanitize=True, build_dir=ROOT / "build" / "sanitize")
    env = {**os.environ, **tfkit.build.sanitizer_env(), "TFKIT_LIBRARY": str(library)}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", *sys.argv[1:], *TESTS]
    print(f"sanitized library: {library}\nrunning: {' '.join(command)}", flush=True)
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
