"""Benchmark: the digits classifier behind `tfkit serve`, over loopback.

Throughput and p50/p99 latency at 1, 8 and 32 concurrent clients, REST and
gRPC, batching off and on, next to the same SavedModel called in this process
(the upper bound). Each client sends one example per request and waits for
the answer before sending the next. The server runs as its own process
(`python -m tfkit serve`); the clients are asyncio tasks in this process
(aiohttp and grpc.aio), so on a small machine clients and server share the
CPU. Then one request is taken apart: how long each step costs on its own.
Writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import aiohttp
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import tfkit  # noqa: F401 (registers the Tfkit> ops)
from benchmarks.common import median_seconds, write_report
from tfkit.serving import codec
from tfkit.serving.launch import ServerProcess
from tfkit.serving.servable import load_servable

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "build" / "digits_model"
MODEL = "digits"
CONCURRENCY = (1, 8, 32)
BATCHING_FLAGS = ["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "500"]


def ensure_model() -> None:
    if not (BASE / "1" / "saved_model.pb").is_file():
        print("exporting the digits model (examples/digits_classifier.py) ...")
        subprocess.run([sys.executable, str(ROOT / "examples" / "digits_classifier.py")], check=True)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize(latencies: list[float], rounds: list[float], cpu: dict[str, float]) -> dict:
    """Requests/s (median over rounds), latency percentiles in ms, and the
    CPU time per request of the client and server processes in us."""
    ordered = sorted(latencies)
    return {
        "requests_per_s": statistics.median(rounds),
        "p50_ms": 1e3 * ordered[len(ordered) // 2],
        "p99_ms": 1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "requests": len(ordered),
        **{f"{side}_cpu_us_per_request": 1e6 * seconds / len(ordered) for side, seconds in cpu.items()},
    }


async def _client_loop(call, deadline: float, latencies: list[float]) -> None:
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - start)


async def drive(call, clients: int, seconds: float, rounds: int, server_pid: int) -> dict:
    """Runs `clients` loops of `await call()` for `rounds` timed rounds."""
    await asyncio.gather(*(call() for _ in range(clients)))  # warm-up
    latencies, throughputs = [], []
    client_cpu, server_cpu = time.process_time(), process_cpu_seconds(server_pid)
    for _ in range(rounds):
        before = len(latencies)
        start = time.perf_counter()
        await asyncio.gather(*(_client_loop(call, start + seconds, latencies) for _ in range(clients)))
        throughputs.append((len(latencies) - before) / (time.perf_counter() - start))
    cpu = {"client": time.process_time() - client_cpu, "server": process_cpu_seconds(server_pid) - server_cpu}
    return summarize(latencies, throughputs, cpu)


async def measure_rest(url: str, example: np.ndarray, clients: int, seconds: float, rounds: int, pid: int) -> dict:
    body = json.dumps({"instances": example.tolist()}).encode()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def call():
            async with session.post(f"{url}/v1/models/{MODEL}:predict", data=body) as response:
                assert response.status == 200, await response.text()
                await response.read()

        return await drive(call, clients, seconds, rounds, pid)


async def measure_grpc(target: str, request, clients: int, seconds: float, rounds: int, pid: int) -> dict:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def call():
            await stub.Predict(request, timeout=30)

        return await drive(call, clients, seconds, rounds, pid)


def _call_loop(signature, x: tf.Tensor, deadline: float, latencies: list[float]) -> None:
    own = []
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        signature(x)
        own.append(time.perf_counter() - start)
    latencies.extend(own)  # one list.extend per thread: atomic under the GIL


def measure_in_process(signature, x: tf.Tensor, clients: int, seconds: float, rounds: int) -> dict:
    """The signature called directly from `clients` threads; with a batch of
    n examples in x, each call counts as n requests of one example."""
    signature(x)
    examples = int(x.shape[0])
    latencies, throughputs = [], []
    cpu = time.process_time()
    for _ in range(rounds):
        before = len(latencies)
        start = time.perf_counter()
        threads = [
            threading.Thread(target=_call_loop, args=(signature, x, start + seconds, latencies)) for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        throughputs.append(examples * (len(latencies) - before) / (time.perf_counter() - start))
    result = summarize(latencies, throughputs, {"client": (time.process_time() - cpu) / examples})
    return {**result, "requests": examples * result["requests"]}


def breakdown(example: np.ndarray, repeats: int) -> dict:
    """The cost of each step of one request, timed alone in this process (us)."""
    servable = load_servable(MODEL, 1, BASE / "1")
    signature = servable.signature(None)
    key = next(iter(signature.inputs))
    body = json.dumps({"instances": example.tolist()}).encode()
    request = predict_pb2.PredictRequest()
    request.inputs[key].CopyFrom(tf.make_tensor_proto(example))
    wire = request.SerializeToString()
    outputs = signature({key: example})

    def rest_codec():
        _, form, data = codec.parse_predict_body(json.loads(body))
        json.dumps(codec.json_outputs(form, outputs))
        codec.json_inputs(signature, form, data, len(body))

    def grpc_codec():
        parsed = predict_pb2.PredictRequest.FromString(wire)
        codec.proto_inputs(signature, parsed.inputs, len(wire))
        response = predict_pb2.PredictResponse()
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(codec.to_proto(value))
        response.SerializeToString()

    steps = {
        "model call (signature, 1 example)": lambda: signature({key: example}),
        "REST JSON decode + check + encode": rest_codec,
        "gRPC proto decode + check + encode": grpc_codec,
    }
    return {name: 1e6 * median_seconds(fn, repeats) for name, fn in steps.items()}


def run(seconds: float, rounds: int) -> dict:
    ensure_model()
    example = (np.arange(64, dtype=np.float32) % 17 / 16.0).reshape(1, 64)
    signature = tf.saved_model.load(str(BASE / "1")).signatures["serving_default"]
    (key,) = signature.structured_input_signature[1]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[key].CopyFrom(tf.make_tensor_proto(example))
    rows = []

    def call(x):
        return signature(**{key: x})

    for clients in CONCURRENCY:
        result = measure_in_process(call, tf.constant(example), clients, seconds, rounds)
        rows.append({"path": "in-process", "batching": "-", "clients": clients, **result})
        print(rows[-1], flush=True)
    batch = tf.constant(np.repeat(example, 32, axis=0))
    rows.append(
        {
            "path": "in-process",
            "batching": "32/call",
            "clients": 1,
            **measure_in_process(call, batch, 1, seconds, rounds),
        }
    )
    print(rows[-1], flush=True)
    for batching in (False, True):
        flags = BATCHING_FLAGS if batching else []
        with ServerProcess([str(BASE), "--model_name", MODEL, *flags]) as server:
            for clients in CONCURRENCY:
                for path in ("REST", "gRPC"):
                    pid = server.process.pid
                    if path == "REST":
                        coroutine = measure_rest(server.rest_url, example, clients, seconds, rounds, pid)
                    else:
                        coroutine = measure_grpc(server.grpc_target, request, clients, seconds, rounds, pid)
                    result = asyncio.run(coroutine)
                    rows.append({"path": path, "batching": "on" if batching else "off", "clients": clients, **result})
                    print(rows[-1], flush=True)
            if server.stop() != 0:
                raise RuntimeError("the server did not exit 0 after SIGTERM")
    return {
        "model": str(BASE / "1"),
        "seconds_per_round": seconds,
        "rounds": rounds,
        "batching_flags": BATCHING_FLAGS,
        "cpu_count": os.cpu_count(),
        "results": rows,
        "breakdown_us": breakdown(example, repeats=200),
    }


def print_table(report: dict) -> None:
    print(
        f"\n{'path':<11} {'batching':<8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'server CPU us/req':>18} {'client CPU us/req':>18}"
    )
    for r in report["results"]:
        server_cpu = r.get("server_cpu_us_per_request")
        print(
            f"{r['path']:<11} {r['batching']:<8} {r['clients']:>7} {r['requests_per_s']:>8.0f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {'-' if server_cpu is None else f'{server_cpu:.0f}':>18} "
            f"{r['client_cpu_us_per_request']:>18.0f}"
        )
    print("\none request, step by step (median us):")
    for name, us in report["breakdown_us"].items():
        print(f"  {name:<40} {us:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per cell (the median is reported)")
    args = parser.parse_args()
    report = run(args.seconds, args.rounds)
    print_table(report)
    write_report("serving", report)


if __name__ == "__main__":
    main()
