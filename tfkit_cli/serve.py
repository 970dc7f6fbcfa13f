"""`tfkit serve`: TensorFlow Serving's flags for tfkit.serving's server."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys


def serve(args: argparse.Namespace) -> int:
    """`tfkit serve`: TensorFlow Serving's flags, tfkit.serving's server."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    from tfkit import _loader

    try:
        from tfkit import serving
    except ImportError as err:
        print(
            f"tfkit serve needs the server's dependencies ({err}): pip install 'tfkit[serve]' "
            "(in a tfkit checkout, make setup installs them)",
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
        host=serving.DEFAULT_HOST if args.host is None else args.host,
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
    parser.add_argument(
        "--host",
        help="the address both APIs listen on (default 127.0.0.1: this machine only). The server has no "
        "authentication: with another address (0.0.0.0: every interface) anyone who can reach the ports can "
        "run the models, so put it behind an authenticating proxy or a network policy",
    )
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
