"""Command line: `python -m tfkit info|check|serve|...`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys


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
    return scaffold_command(
        lambda scaffold: scaffold.new_op(name, root, source),
        lambda written: "\n".join(f"wrote {path}" for path in written)
        + f"\nnext: make test (the new family's tests: tests/ops/test_{name}.py), make bench",
    )


def init(directory: str, family: str) -> int:
    return scaffold_command(
        lambda scaffold: scaffold.init_project(directory, family),
        lambda written: f"created {directory} ({len(written)} files): cd {directory} && make test",
    )


def serve(args: argparse.Namespace) -> int:
    """`python -m tfkit serve`: TensorFlow Serving's flags, tfkit.serving's server."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    from tfkit import _loader

    try:
        from tfkit import serving
    except ImportError as err:
        print(
            f"tfkit serve needs aiohttp and tensorflow-serving-api ({err}): "
            "pip install aiohttp==3.14.5 tensorflow-serving-api==<your TensorFlow version>",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s tfkit serve: %(message)s")
    try:
        options = serve_options(args)
    except (ValueError, OSError) as err:
        print(f"tfkit serve: {err}", file=sys.stderr)
        return 2
    try:
        return serving.serve(options)
    except (OSError, serving.ModelLoadError, _loader.OpLibraryError) as err:
        print(f"tfkit serve: {err}", file=sys.stderr)
        return 1


def serve_options(args: argparse.Namespace):
    """The ServerOptions the `serve` flags describe."""
    from pathlib import Path

    from tfkit import serving

    if args.model_base_path and args.model_base_path_flag and args.model_base_path != args.model_base_path_flag:
        raise ValueError("MODEL_BASE_PATH and --model_base_path differ; give one")
    base_path = args.model_base_path or args.model_base_path_flag
    if args.model_config_file:
        if base_path:
            raise ValueError("give either MODEL_BASE_PATH or --model_config_file, not both")
        models = serving.read_model_config_file(Path(args.model_config_file))
    elif base_path:
        models = [serving.ModelConfig(args.model_name, Path(base_path).resolve())]
    else:
        raise ValueError("give MODEL_BASE_PATH (with --model_name) or --model_config_file")
    return serving.ServerOptions(
        models=models,
        port=args.port,
        rest_api_port=args.rest_api_port,
        host=args.host,
        batching=batching_parameters(args),
        poll_seconds=args.file_system_poll_wait_seconds,
        op_libraries=[Path(path) for path in args.op_library],
        max_request_bytes=args.max_request_bytes,
        max_concurrent_requests=args.max_concurrent_requests,
        request_read_timeout_seconds=args.request_read_timeout_seconds,
        drain_seconds=args.drain_seconds,
        intra_op_threads=args.tensorflow_intra_op_parallelism,
        inter_op_threads=args.tensorflow_inter_op_parallelism,
    )


def batching_parameters(args: argparse.Namespace):
    """None without --enable_batching; else the file's values, then the flags'."""
    from tfkit import serving

    if not args.enable_batching:
        return None
    base = (
        serving.read_batching_parameters_file(args.batching_parameters_file)
        if args.batching_parameters_file
        else serving.BatchingParameters()
    )
    overrides = {name: getattr(args, name) for name in BATCHING_FLAGS if getattr(args, name) is not None}
    return dataclasses.replace(base, **overrides)


# TensorFlow Serving's batching parameters, with their defaults.
BATCHING_FLAGS = {
    "max_batch_size": "default 1000",
    "batch_timeout_micros": "default 0",
    "num_batch_threads": "default: the CPU count",
    "max_enqueued_batches": "default 10",
}


def add_serve_parser(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve SavedModels (custom ops included) over TensorFlow Serving's REST and gRPC APIs",
        description="Serve MODEL_BASE_PATH/<version>/ (the highest version, polled for new ones) over TensorFlow "
        "Serving's REST and gRPC APIs, with tfkit's op library and any --op_library registered first. "
        "SIGTERM or SIGINT drains requests in flight and exits 0.",
    )
    parser.add_argument("model_base_path", nargs="?", help="the folder holding the model's numbered versions")
    parser.add_argument(
        "--model_base_path", dest="model_base_path_flag", metavar="PATH", help="the same, in TensorFlow Serving's form"
    )
    parser.add_argument("--model_name", default="default", help="the name clients use (default: default)")
    parser.add_argument("--model_config_file", help="a ModelServerConfig text proto listing several models")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500; 0: any free port)")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port (default 8501; 0: any free port)")
    parser.add_argument("--host", default="0.0.0.0", help="the address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--file_system_poll_wait_seconds", type=float, default=1.0,
        help="seconds between looks for new versions (default 1; 0: only at start)",
    )
    parser.add_argument("--enable_batching", action="store_true", help="merge concurrent requests into batches")
    parser.add_argument("--batching_parameters_file", help="TensorFlow Serving's batching parameters text file")
    for name, meaning in BATCHING_FLAGS.items():
        parser.add_argument(f"--{name}", type=int, help=f"batching parameter ({meaning}); overrides the file")
    parser.add_argument(
        "--op_library", action="append", default=[], metavar="PATH",
        help="another op library to load before the models (repeatable), e.g. tfkit.build's output",
    )
    parser.add_argument(
        "--max_request_bytes", type=int, default=64 * 1024 * 1024,
        help="the largest REST body (also once decompressed) or gRPC message accepted, and the most one "
        "request's inputs may take once decoded (default 64 MiB)",
    )
    parser.add_argument(
        "--max_concurrent_requests",
        type=int,
        default=64,
        help="the most predict requests, REST and gRPC together, being read, decoded or run at once; "
        "more are refused with 503 / UNAVAILABLE (default 64)",
    )
    parser.add_argument(
        "--request_read_timeout_seconds",
        type=float,
        default=30.0,
        help="how long a client may take to send a request's head and body, also at shutdown, "
        "whatever --drain_seconds says (default 30)",
    )
    for name, meaning in (("intra", "within one op"), ("inter", "running ops side by side")):
        parser.add_argument(
            f"--tensorflow_{name}_op_parallelism",
            type=int,
            default=0,
            help=f"TensorFlow's threads {meaning} (default 0: TensorFlow's choice)",
        )
    parser.add_argument(
        "--drain_seconds", type=float, default=30.0, help="on SIGTERM/SIGINT, how long to wait for requests in flight"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfkit", description="tfkit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="TensorFlow version, op library, build stamp, devices")
    check_parser = commands.add_parser(
        "check", help="inspect a SavedModel: Python-callback ops, custom ops (exit 1 on a problem)"
    )
    check_parser.add_argument("export_dir")
    new_op_parser = commands.add_parser("new-op", help="generate a new op family (every layer, tests, benchmark)")
    new_op_parser.add_argument("name", help="the family name, e.g. soft_clip")
    new_op_parser.add_argument("--root", default=".", help="the tfkit checkout (default: .)")
    new_op_parser.add_argument(
        "--from",
        dest="source",
        metavar="MODULE:FUNCTION",
        help="take the inputs, attributes and docstring from this prototype op (tfkit.prototype.op), and test against it",
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
    commands.add_parser(
        "sanitizer-env", help="print the exports a process needs to load libraries built with sanitize=True"
    )
    args = parser.parse_args(argv)
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
