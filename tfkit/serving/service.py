"""What REST and gRPC share: the bound on requests at once, finding the
servable and signature, running the model (through the batcher or a thread
pool), and its errors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Iterator
from typing import Callable

import numpy as np
import tensorflow as tf

from tfkit.serving.batching import Batcher, batch_rows
from tfkit.serving.errors import ServingError, internal, invalid_argument, unavailable
from tfkit.serving.repository import ModelRepository
from tfkit.serving.servable import Servable, Signature

Inputs = dict[str, np.ndarray]


class InferenceService:
    """Runs predictions for both APIs.

    Args:
      repository: the models.
      batcher: merges concurrent requests, or None to call the model per request.
      executor: the threads that run unbatched model calls.
      max_concurrent_requests: the most predict requests, over both APIs,
        being read, decoded or run at once (see `admit`).
    """

    def __init__(
        self,
        repository: ModelRepository,
        batcher: Batcher | None,
        executor: concurrent.futures.Executor,
        max_concurrent_requests: int,
    ):
        self.repository = repository
        self.batcher = batcher
        self.executor = executor
        self.max_concurrent_requests = max_concurrent_requests
        self._free_slots = threading.Semaphore(max_concurrent_requests)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Holds one of the `max_concurrent_requests` slots while a predict
        request is read, decoded and run, so that the memory requests take
        stays bounded; never waits (a call from the event loop may hold it).

        Raises:
          ServingError: UNAVAILABLE when every slot is taken.
        """
        if not self._free_slots.acquire(blocking=False):
            raise unavailable(
                f"the server is at its limit of {self.max_concurrent_requests} requests at once; retry later"
            )
        try:
            yield
        finally:
            self._free_slots.release()

    async def predict(
        self,
        name: str,
        version: int | None,
        signature_name: str | None,
        decode: Callable[[Signature], Inputs],
        decode_in_thread: bool = False,
    ) -> tuple[Servable, Signature, dict[str, np.ndarray]]:
        """Decodes a request's inputs for its signature and runs the model;
        the caller holds a slot of `admit` (REST takes it before the body).

        Args:
          name: the model name.
          version: the version asked for, or None for the served one.
          signature_name: the signature, or None for serving_default.
          decode: turns the request into checked inputs for a signature.
          decode_in_thread: decode on the thread pool, not the event loop
            (for large requests, so that the loop keeps serving others).

        Returns:
          (servable, signature, outputs), the outputs as NumPy arrays.

        Raises:
          ServingError: for anything wrong with the request or the model call.
        """
        if decode_in_thread:
            prepare = self.executor.submit(self._prepare, name, version, signature_name, decode)
            servable, signature, inputs = await asyncio.wrap_future(prepare)
        else:
            servable, signature, inputs = self._prepare(name, version, signature_name, decode)
        if self._batches(signature, inputs):
            future = self.batcher.submit(_batch_key(servable, signature, inputs), _guarded(signature), inputs)
        else:
            future = self.executor.submit(_guarded(signature), inputs)
        return servable, signature, await asyncio.wrap_future(future)

    def predict_blocking(
        self,
        name: str,
        version: int | None,
        signature_name: str | None,
        decode: Callable[[Signature], Inputs],
    ) -> tuple[Servable, Signature, dict[str, np.ndarray]]:
        """`predict` for a caller on its own thread (the gRPC server's):
        without batching, the model runs on the calling thread. It holds a
        slot of `admit` throughout."""
        with self.admit():
            servable, signature, inputs = self._prepare(name, version, signature_name, decode)
            if not self._batches(signature, inputs):
                return servable, signature, _guarded(signature)(inputs)
            future = self.batcher.submit(_batch_key(servable, signature, inputs), _guarded(signature), inputs)
            return servable, signature, future.result()

    def _batches(self, signature: Signature, inputs: Inputs) -> bool:
        """Whether the request goes through the batcher: batching is on, the
        signature leaves its inputs' first dimension open (a fixed one could
        not take a merged batch) and the inputs share it; others run alone."""
        return (
            self.batcher is not None
            and all(info.shape is None or info.shape[:1] == (None,) for info in signature.inputs.values())
            and batch_rows(inputs) is not None
        )

    def _prepare(
        self, name: str, version: int | None, signature_name: str | None, decode: Callable[[Signature], Inputs]
    ) -> tuple[Servable, Signature, Inputs]:
        servable = self.repository.servable(name, version)
        signature = servable.signature(signature_name)
        return servable, signature, decode(signature)


def _batch_key(servable: Servable, signature: Signature, inputs: Inputs) -> tuple:
    """Requests with equal keys may share a batch: the same version and
    signature, and the same per-example shapes and dtypes."""
    shapes = tuple(sorted((key, value.shape[1:], value.dtype.str) for key, value in inputs.items()))
    return (id(servable), signature.name, shapes)


def _guarded(signature: Signature) -> Callable[[Inputs], dict[str, np.ndarray]]:
    """The signature's call, with the model's errors turned into ServingErrors."""

    def call(inputs: Inputs) -> dict[str, np.ndarray]:
        try:
            return signature(inputs)
        except tf.errors.InvalidArgumentError as err:
            raise invalid_argument(f"the model rejected the input: {_essence(err.message)}") from err
        except ServingError:
            raise
        except Exception as err:  # any failure inside the model call
            raise internal(f"the model call failed: {err}") from err

    return call


_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[{{node")


def _essence(message: str) -> str:
    """A TensorFlow error message without its graph-location lines."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE)]
    return " ".join(kept) or message
