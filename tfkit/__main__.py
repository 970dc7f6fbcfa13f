"""`python -m tfkit ...`: the same command line as `tfkit ...` (tfkit_cli)."""

import sys

from tfkit_cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tfkit"))
