"""tfkit's command line: `tfkit info|check|init|new-op|serve|server|launch|...` (also `python -m tfkit`).

This package imports no TensorFlow (nor tfkit, which imports it): `tfkit
--help` and every subcommand's `--help` answer at once, and each command
imports what it needs when it runs."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from tfkit_cli.cluster import add_cluster_parsers, launch, server
from tfkit_cli.serve import add_serve_parser, serve


def info() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from tfkit import _compat, _loader, backend

    path = _loader.library_path()
    print(f"tensorflow       {tf.version.VERSION} (built with CUDA: {tf.test.is_built_with_cuda()})")
    print(f"op library       {path}")
    try:
        stamp = _loader.build_info(path)
    except _loader.OpLibraryError as err:
        print(f"build stamp      unavailable: {err}")
        stamp = {}
    if stamp:
        gpu = stamp.get("cuda") == "1"
        print(f"build stamp      tf_version={stamp.get('tf_version')}")
        print(
            "gpu kernels      "
            + (f"yes (CUDA {stamp.get('cuda_version')}, {stamp.get('cuda_archs')})" if gpu else "no")
        )
        try:
            _loader.load_library()
            print("loads            yes")
        except _loader.OpLibraryError as err:
            print(f"loads            no: {err}")
    print(f"backend          {backend.resolve(None)} ({backend.ENV_VAR}={os.environ.get(backend.ENV_VAR, '')})")
    devices = tf.config.list_physical_devices()
    print("devices          " + ", ".join(f"{d.name} ({d.device_type})" for d in devices))
    # The internals tfkit relies on (tfkit._compat) and which are active.
    found = _compat.status()
    print(f"internals        {sum(on for on, _ in found.values())} of {len(found)} active (tfkit/_compat.py)")
    width = max(map(len, found))
    for name, (on, reason) in found.items():
        feature = _compat.FEATURES[name]
        print(f"  {name:<{width}}  {'active' if on else 'INACTIVE'}  {feature.internal}")
        if not on:
            print(f"  {'':<{width}}  {reason}; {feature.enables} is off: {feature.fallback}")
    return 0


def check(export_dir: str) -> int:
    from tfkit import saved_model

    try:
        report = saved_model.check(export_dir)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def scaffold_command(make, report) -> int:
    """Runs a scaffold step; prints `report(written files)`, or its refusal."""
    from tfkit import scaffold

    try:
        written = make(scaffold)
    except scaffold.ScaffoldError as err:
        print(err, file=sys.stderr)
        return 2
    print(report(written))
    return 0


def new_op(name: str, root: str, source: str | None) -> int:
    def report(written) -> str:
        tests = next(path for path in written if path.name == f"test_{name}.py")
        return "\n".join(f"wrote {path}" for path in written) + (
            f"\nnext: make build (the family joins the same library), then python -m pytest -q {tests}"
        )

    return scaffold_command(lambda scaffold: scaffold.new_op(name, root, source), report)


def init(directory: str, family: str) -> int:
    return scaffold_command(
        lambda scaffold: scaffold.init_project(directory, family),
        lambda written: f"created {directory} ({len(written)} files): cd {directory} && make test\n"
        f"its Makefile runs {sys.executable} (the Python that ran init); "
        "for another one: make PY=/path/to/python test, or change the Makefile's `PY ?=` line",
    )


def build_parser(prog: str = "tfkit") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="tfkit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="TensorFlow version, op library, build stamp, devices")
    check_parser = commands.add_parser(
        "check", help="inspect a SavedModel: Python-callback ops, custom ops (exit 1 on a problem)"
    )
    check_parser.add_argument("export_dir")
    new_op_parser = commands.add_parser(
        "new-op", help="generate a new op family (every layer, tests) in a tfkit checkout or an init project"
    )
    new_op_parser.add_argument("name", help="the family name, e.g. soft_clip")
    new_op_parser.add_argument(
        "--root", default=".", help="the tfkit checkout or the project `tfkit init` made (default: .)"
    )
    new_op_parser.add_argument(
        "--from",
        dest="source",
        metavar="MODULE:FUNCTION",
        help="take the inputs, attributes and docstring from this prototype op (tfkit.prototype.op), "
        "and test against it",
    )
    init_parser = commands.add_parser("init", help="create an op project of one's own in DIR")
    init_parser.add_argument("directory")
    init_parser.add_argument("--op", default="soft_clip", help="the first family's name (default: soft_clip)")
    commands.add_parser("bazel-dir", help="print the folder of tfkit's Bazel macro and configure rules")
    library_parser = commands.add_parser(
        "build-library", help="compile every family of a tree in tfkit's layout into one library (no Bazel)"
    )
    library_parser.add_argument("root")
    library_parser.add_argument("--name", required=True)
    library_parser.add_argument("--output", required=True)
    add_serve_parser(commands)
    add_cluster_parsers(commands)
    commands.add_parser(
        "sanitizer-env", help="print the exports a process needs to load libraries built with sanitize=True"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "tfkit") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.command == "init":
        return init(args.directory, args.op)
    if args.command == "bazel-dir":
        from tfkit import build

        print(build.bazel_dir())
        return 0
    if args.command == "build-library":
        from tfkit import build

        shutil.copy2(build.compile_layout(args.root, args.name), args.output)
        print(f"wrote {args.output}")
        return 0
    if args.command == "new-op":
        return new_op(args.name, args.root, args.source)
    if args.command == "sanitizer-env":
        from tfkit import build

        for key, value in build.sanitizer_env().items():
            print(f"export {key}={value}")
        return 0
    if args.command == "info":
        return info()
    if args.command == "check":
        return check(args.export_dir)
    if args.command == "serve":
        return serve(args)
    if args.command == "server":
        return server(args)
    if args.command == "launch":
        return launch(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
