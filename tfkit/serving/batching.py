"""Server-side batching: concurrent requests merged into one model call.

Requests for the same servable, signature and per-example shapes join an
open batch. A batch runs when it is full (`max_batch_size` rows), when its
oldest request has waited `batch_timeout_micros`, or, with a timeout of 0,
as soon as a batch thread is free (so batches grow only while every thread
is busy). The outputs are split back by each request's row count, so every
caller gets exactly its own rows.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import os
import threading
import time
from typing import Callable

import numpy as np

from tfkit.serving.errors import invalid_argument, unavailable

log = logging.getLogger("tfkit.serving")

Outputs = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TensorFlow Serving's batching parameters (and its defaults)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    max_enqueued_batches: int = 10

    def __post_init__(self):
        for field in dataclasses.fields(self):
            minimum = 0 if field.name == "batch_timeout_micros" else 1
            if getattr(self, field.name) < minimum:
                raise ValueError(
                    f"batching parameter {field.name} must be >= {minimum}, got {getattr(self, field.name)}"
                )


@dataclasses.dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: concurrent.futures.Future


@dataclasses.dataclass
class _Batch:
    key: tuple
    run: Callable[[dict[str, np.ndarray]], Outputs]
    deadline: float
    tasks: list[_Task] = dataclasses.field(default_factory=list)
    rows: int = 0


class Batcher:
    """Merges concurrent calls of one function into batched calls.

    Args:
      parameters: the batching parameters.
    """

    def __init__(self, parameters: BatchingParameters):
        self.parameters = parameters
        self._cond = threading.Condition()
        self._open: dict[tuple, _Batch] = {}
        self._ready: collections.deque[_Batch] = collections.deque()
        self._stopping = False
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # requests per batch -> batches run
        self._threads = [
            threading.Thread(target=self._work, name=f"tfkit-batch-{i}", daemon=True)
            for i in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: tuple, run: Callable, inputs: dict[str, np.ndarray]) -> concurrent.futures.Future:
        """Queues `inputs` (all with the same first dimension) for `run`.

        `key` identifies calls that may share a batch (same function, same
        per-example shapes and dtypes); `run` maps merged inputs to outputs.

        Returns:
          A future of this request's own rows of the outputs.

        Raises:
          ServingError: INVALID_ARGUMENT for more rows than max_batch_size,
            UNAVAILABLE when max_enqueued_batches batches already wait.
        """
        rows = _rows(inputs)
        limit = self.parameters.max_batch_size
        if rows > limit:
            raise invalid_argument(f"a request of {rows} examples is larger than the server's max_batch_size {limit}")
        task = _Task(inputs, rows, concurrent.futures.Future())
        with self._cond:
            if self._stopping:
                raise unavailable("the server is shutting down")
            batch = self._open.get(key)
            if batch is not None and batch.rows + rows > limit:
                self._close(batch)
                batch = None
            if batch is None:
                if len(self._ready) >= self.parameters.max_enqueued_batches:
                    raise unavailable(f"the batch queue is full ({len(self._ready)} batches wait); retry later")
                deadline = time.monotonic() + self.parameters.batch_timeout_micros / 1e6
                batch = self._open[key] = _Batch(key, run, deadline)
            batch.tasks.append(task)
            batch.rows += rows
            if batch.rows == limit:
                self._close(batch)
            self._cond.notify()
        return task.future

    def stop(self) -> None:
        """Runs what is queued, then ends the batch threads."""
        with self._cond:
            self._stopping = True
            for batch in list(self._open.values()):
                self._close(batch)
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _close(self, batch: _Batch) -> None:
        del self._open[batch.key]
        self._ready.append(batch)

    def _next_batch(self) -> _Batch | None:
        """Waits for a batch that is due; None once stopping and drained."""
        with self._cond:
            while True:
                if self._ready:
                    return self._ready.popleft()
                now = time.monotonic()
                due = min(self._open.values(), key=lambda b: b.deadline, default=None)
                if due is not None and due.deadline <= now:
                    self._close(due)
                    continue
                if self._stopping:
                    return None
                self._cond.wait(timeout=None if due is None else due.deadline - now)

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            with self._cond:
                self.batch_sizes[len(batch.tasks)] += 1
            _run_batch(batch)


def batch_rows(inputs: dict[str, np.ndarray]) -> int | None:
    """The examples in `inputs`: their common first dimension, or None when
    they have none (a scalar input, or first dimensions that differ), so
    the request cannot join a batch."""
    sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
    return None if len(sizes) != 1 or None in sizes else sizes.pop()


def _rows(inputs: dict[str, np.ndarray]) -> int:
    rows = batch_rows(inputs)
    if rows is None:
        raise invalid_argument(
            "batching needs every input to have the same first (batch) dimension, got shapes "
            + str({key: list(value.shape) for key, value in inputs.items()})
        )
    return rows


def _run_batch(batch: _Batch) -> None:
    """Runs a batch; if it fails, runs its requests one by one, so a request
    that makes the model fail fails alone."""
    tasks = [task for task in batch.tasks if task.future.set_running_or_notify_cancel()]
    if len(tasks) > 1:
        try:
            merged = {key: np.concatenate([task.inputs[key] for task in tasks]) for key in tasks[0].inputs}
            outputs = _split(batch.run(merged), [task.rows for task in tasks])
        except Exception as err:
            log.info("a batch of %d requests failed (%s); running them one by one", len(tasks), err)
        else:
            for task, own in zip(tasks, outputs, strict=True):
                task.future.set_result(own)
            return
    for task in tasks:
        _run_alone(batch.run, task)


def _run_alone(run: Callable, task: _Task) -> None:
    try:
        task.future.set_result(run(task.inputs))
    except BaseException as err:  # the caller gets the model's error
        task.future.set_exception(err)


def _split(outputs: Outputs, rows: list[int]) -> list[Outputs]:
    total = sum(rows)
    for key, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise invalid_argument(
                f"with batching on, every output needs the batch dimension first; output '{key}' has shape "
                f"{list(value.shape)} for a batch of {total}"
            )
    offsets = np.cumsum([0, *rows])
    return [{key: value[start:end] for key, value in outputs.items()} for start, end in itertools.pairwise(offsets)]
