"""Server-side batching: concurrent requests merged into one model call and
split back so that every client gets exactly its own rows."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from tests.serving.conftest import TIMEOUT, Client, options, outputs_of
from tfkit import serving
from tfkit.serving.batching import Batcher


def doubled(calls: list[int]):
    def run(inputs):
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "ids": inputs["x"][:, 0].astype(np.int64)}

    return run


def submit_concurrently(batcher: Batcher, run, requests: list[np.ndarray]) -> list[dict]:
    futures = [None] * len(requests)

    def submit(i: int) -> None:
        futures[i] = batcher.submit(("k",), run, {"x": requests[i]})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    return [future.result(timeout=TIMEOUT) for future in futures]


# A batch timeout no test waits for: batches run when full.
NEVER_DUE_MICROS = 10_000_000


def test_concurrent_requests_merge_and_split_back_exactly():
    # request i has i % 3 + 1 rows, each row holding the request's id
    requests = [np.full([i % 3 + 1, 2], i, np.float32) for i in range(16)]
    rows = sum(len(r) for r in requests)
    batcher = Batcher(
        serving.BatchingParameters(max_batch_size=rows, batch_timeout_micros=NEVER_DUE_MICROS, num_batch_threads=1)
    )
    try:
        calls = []
        results = submit_concurrently(batcher, doubled(calls), requests)
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], requests[i] * 2)
            assert result["ids"].tolist() == [i] * (i % 3 + 1)
        assert calls == [rows]  # one model call for all sixteen requests
    finally:
        batcher.stop()


def test_requests_with_different_keys_never_share_a_batch():
    batcher = Batcher(
        serving.BatchingParameters(max_batch_size=4, batch_timeout_micros=NEVER_DUE_MICROS, num_batch_threads=1)
    )
    calls = {"doubled": [], "negated": []}

    def negated(inputs):
        calls["negated"].append(len(inputs["x"]))
        return {"y": -inputs["x"]}

    try:
        futures = [
            batcher.submit(
                ("doubled",) if i % 2 else ("negated",),
                doubled(calls["doubled"]) if i % 2 else negated,
                {"x": np.full([1, 1], i, np.float32)},
            )
            for i in range(8)
        ]
        results = [future.result(timeout=TIMEOUT)["y"].item() for future in futures]
        assert results == [2.0 * i if i % 2 else -i for i in range(8)]
        assert calls == {"doubled": [4], "negated": [4]}
    finally:
        batcher.stop()


def test_full_batches_run_at_once_and_never_exceed_max_batch_size():
    batcher = Batcher(
        serving.BatchingParameters(max_batch_size=4, batch_timeout_micros=NEVER_DUE_MICROS, num_batch_threads=1)
    )
    try:
        calls = []
        results = submit_concurrently(batcher, doubled(calls), [np.full([2, 1], i, np.float32) for i in range(6)])
        assert [r["ids"].tolist() for r in results] == [[i, i] for i in range(6)]
        assert calls == [4, 4, 4]  # three full batches; none waited 10 s
        with pytest.raises(serving.ServingError, match="larger than the server's max_batch_size 4"):
            batcher.submit(("k",), doubled(calls), {"x": np.zeros([5, 1], np.float32)})
    finally:
        batcher.stop()


def test_full_queue_is_unavailable_and_errors_reach_every_caller():
    batcher = Batcher(serving.BatchingParameters(max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1))
    release = threading.Event()

    def blocked(inputs):
        release.wait(TIMEOUT)
        raise ValueError("the model failed")

    try:
        first = batcher.submit(("k",), blocked, {"x": np.zeros([1])})
        deadline = time.monotonic() + TIMEOUT
        while not first.running() and time.monotonic() < deadline:  # until the batch thread holds it
            time.sleep(0.01)
        second = batcher.submit(("k",), blocked, {"x": np.zeros([1])})
        with pytest.raises(serving.ServingError) as caught:
            batcher.submit(("k",), blocked, {"x": np.zeros([1])})
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        release.set()
        for future in (first, second):
            with pytest.raises(ValueError, match="the model failed"):
                future.result(timeout=TIMEOUT)
    finally:
        release.set()
        batcher.stop()


def test_a_request_that_fails_the_model_fails_alone():
    batcher = Batcher(
        serving.BatchingParameters(max_batch_size=6, batch_timeout_micros=NEVER_DUE_MICROS, num_batch_threads=1)
    )
    calls = []

    def positive_only(inputs):
        calls.append(len(inputs["x"]))
        if (inputs["x"] < 0).any():
            raise serving.ServingError(grpc.StatusCode.INVALID_ARGUMENT, "x must be >= 0")
        return {"y": inputs["x"] * 2}

    try:
        futures = {}
        threads = [
            threading.Thread(
                target=lambda i=i: futures.update(
                    {i: batcher.submit(("k",), positive_only, {"x": np.full([1], i - 2.0)})}
                )
            )
            for i in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=TIMEOUT)
        for i, future in futures.items():
            if i < 2:
                with pytest.raises(serving.ServingError, match="x must be >= 0"):
                    future.result(timeout=TIMEOUT)
            else:
                assert future.result(timeout=TIMEOUT)["y"].tolist() == [2 * (i - 2.0)]
        assert calls[0] == 6 and calls[1:] == [1] * 6  # the batch, then each request alone
    finally:
        batcher.stop()


def test_batching_server_gives_each_rest_and_grpc_client_its_rows(model_base):
    rows = sum(i % 2 + 1 for i in range(12))  # so that the twelve requests make one full batch
    parameters = serving.BatchingParameters(
        max_batch_size=rows, batch_timeout_micros=NEVER_DUE_MICROS, num_batch_threads=1
    )
    with serving.ServerThread(options(model_base, batching=parameters)) as running:
        client = Client(running)
        results = {}

        def rest(i: int) -> None:
            results[i] = client.post("/v1/models/m:predict", {"instances": [[float(i), i + 0.5, -i]] * (i % 2 + 1)})

        def grpc_call(i: int) -> None:
            results[i] = outputs_of(client.predict({"x": np.array([[i, i + 0.5, -i]] * (i % 2 + 1), np.float32)}))

        threads = [threading.Thread(target=rest if i % 2 else grpc_call, args=(i,)) for i in range(12)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=TIMEOUT)
            for i in range(12):
                expected = 2 * np.array([[i, i + 0.5, -i]] * (i % 2 + 1), np.float32) + 1
                got = np.array(results[i][1]["predictions"]) if i % 2 else results[i]["y"]
                np.testing.assert_array_equal(got, expected)
            assert running.server.batcher.batch_sizes == {12: 1}
            status, body = client.post("/v1/models/m:predict", {"instances": [[1.0, 2.0, 3.0]] * (rows + 1)})
            assert status == 400 and f"max_batch_size {rows}" in body["error"]
            # a scalar input has no batch dimension: the request runs alone
            scaled = {"signature_name": "scale", "inputs": {"x": [1.0, 2.0], "factor": 3.0}}
            assert client.post("/v1/models/m:predict", scaled) == (200, {"outputs": [3.0, 6.0]})
            scale_inputs = {"x": np.array([1.0, 2.0], np.float32), "factor": np.float32(3.0)}
            assert outputs_of(client.predict(scale_inputs, signature="scale"))["scaled"].tolist() == [3.0, 6.0]
            # a fixed first dimension could not take a merged batch: the request runs alone
            pair = {"signature_name": "pair", "inputs": [1.0, 2.0]}
            assert client.post("/v1/models/m:predict", pair) == (200, {"outputs": [2.0, 1.0]})
            assert running.server.batcher.batch_sizes == {12: 1}
        finally:
            client.close()
