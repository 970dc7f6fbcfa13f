"""The server's life: load models, listen on REST (an asyncio loop) and
gRPC (grpcio's thread pool), then drain and stop on SIGTERM or SIGINT.

REST model calls run outside the loop (in the batch threads or a thread
pool), so the loop only parses, routes and encodes. A gRPC call runs the
model on its own handler thread, or waits there for its batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator

import grpc
from aiohttp import web

from tfkit import _loader
from tfkit.serving import grpc_service
from tfkit.serving.batching import Batcher
from tfkit.serving.config import ServerOptions
from tfkit.serving.repository import ModelRepository
from tfkit.serving.rest import ProtocolErrorLog, RestApi
from tfkit.serving.service import InferenceService

log = logging.getLogger("tfkit.serving")

# gRPC handler threads: the most gRPC requests that run (or wait for their
# batch) at once; more wait in gRPC's queue.
GRPC_THREADS = 64
# aiohttp reads what is left of an answered request's body for up to this
# long (its default), never longer than the read timeout.
LINGERING_SECONDS = 10.0


def configure_tensorflow(options: ServerOptions) -> None:
    """Sets TensorFlow's thread pools, where asked, before any op runs."""
    import tensorflow as tf

    threading_config = tf.config.threading
    for count, setter in (
        (options.intra_op_threads, threading_config.set_intra_op_parallelism_threads),
        (options.inter_op_threads, threading_config.set_inter_op_parallelism_threads),
    ):
        if count > 0:
            try:
                setter(count)
            except RuntimeError as err:  # TensorFlow already started its pools
                log.warning("could not set TensorFlow's thread count to %d: %s", count, err)


def load_op_libraries(options: ServerOptions) -> None:
    """Registers tfkit's ops and the user's op libraries before any model loads.

    Raises:
      OpLibraryError: a library the user named does not load.
    """
    try:
        _loader.load_library()
    except _loader.OpLibraryError as err:
        log.warning("tfkit's op library did not load, so models with Tfkit> ops will be refused: %s", err)
    for path in options.op_libraries:
        _loader.load_path(path)
        log.info("loaded op library %s", path)


class ModelServer:
    """REST and gRPC endpoints over one model repository.

    Args:
      options: the server's configuration.
      repository: the models; one is made from `options.models` if None.
    """

    def __init__(self, options: ServerOptions, repository: ModelRepository | None = None):
        self.options = options
        self.repository = repository or ModelRepository(options.models, options.poll_seconds)
        self.batcher = Batcher(options.batching) if options.batching else None
        self.executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="tfkit-predict")
        self.service = InferenceService(self.repository, self.batcher, self.executor, options.max_concurrent_requests)
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.Server | None = None
        self._grpc_threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._grpc_calls = grpc_service.CallGuard()

    async def start(self) -> None:
        """Starts listening; the ports are then in rest_port and grpc_port.

        Raises:
          OSError: a port could not be listened on (everything started is
            stopped again).
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        options = self.options
        read_timeout = options.request_read_timeout_seconds
        self._runner = web.AppRunner(
            RestApi(self.service, options.max_request_bytes, read_timeout).app,
            access_log=None,
            logger=ProtocolErrorLog(),
            shutdown_timeout=options.drain_seconds,
            auto_decompress=False,  # RestApi decompresses within max_request_bytes
            keepalive_timeout=read_timeout,  # also closes a connection whose request head is late
            lingering_time=min(LINGERING_SECONDS, read_timeout),
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, options.host, options.rest_api_port)
        try:
            await site.start()
        except OSError as err:
            raise OSError(f"REST could not listen on {options.host}:{options.rest_api_port}: {err}") from err
        self.rest_port = self._runner.addresses[-1][1]
        self._grpc_threads = concurrent.futures.ThreadPoolExecutor(GRPC_THREADS, thread_name_prefix="tfkit-grpc")
        self._grpc = grpc.server(
            self._grpc_threads,
            interceptors=[self._grpc_calls],
            options=[
                ("grpc.max_receive_message_length", options.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        grpc_service.add_services(self._grpc, self.service, options.max_request_bytes)
        try:
            self.grpc_port = self._grpc.add_insecure_port(f"{options.host}:{options.port}")
        except RuntimeError as err:  # grpcio's "failed to bind"
            raise OSError(f"gRPC could not listen on {options.host}:{options.port}: {err}") from err
        self._grpc.start()
        self.repository.start_polling()
        log.info(
            "REST API at http://%s:%d/v1/models, gRPC at %s:%d",
            options.host,
            self.rest_port,
            options.host,
            self.grpc_port,
        )

    async def stop(self) -> None:
        """Stops accepting, lets requests in flight finish (for up to
        drain_seconds; those whose body or message has not arrived, for up to
        the read timeout), then releases all."""
        stops = []
        if self._grpc is not None:
            stops.append(asyncio.to_thread(self._stop_grpc))
        if self._runner is not None:
            stops.append(self._runner.cleanup())
        await asyncio.gather(*stops)
        if self._grpc_threads is not None:  # grpcio leaves the executor it was given running
            self._grpc_threads.shutdown(wait=True)
        if self.batcher is not None:
            self.batcher.stop()
        self.executor.shutdown(wait=True)
        self.repository.stop()

    def _stop_grpc(self) -> None:
        """gRPC's drain: calls still waiting for their message after the read
        timeout are cancelled once no handler runs (REST's read timeout ends
        its own)."""
        drain = self.options.drain_seconds
        started = time.monotonic()
        if self._grpc.stop(grace=drain).wait(min(drain, self.options.request_read_timeout_seconds)):
            return
        self._grpc_calls.wait_until_idle(max(0.0, drain - (time.monotonic() - started)))
        self._grpc.stop(grace=0).wait()


async def _serve_until_signalled(server: ModelServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    await stop.wait()
    log.info("stopping: no new requests; waiting for those in flight")
    await server.stop()
    log.info("stopped")


def serve(options: ServerOptions) -> int:
    """Loads the models and serves them until SIGTERM or SIGINT.

    A signal while the models still load ends the start there (nothing is
    in flight yet), also with status 0.

    Returns:
      The exit status: 0 after a clean shutdown.

    Raises:
      FileNotFoundError, ModelLoadError, OpLibraryError: the models or
        libraries could not be loaded at start.
    """
    try:
        with _signals_abandon_the_start():
            configure_tensorflow(options)
            load_op_libraries(options)
            repository = ModelRepository(options.models, options.poll_seconds)
            repository.load_initial()
            asyncio.run(_serve_until_signalled(ModelServer(options, repository)))
    except _StoppedBeforeServing as stopped:
        log.info("%s while starting: stopped before serving", stopped)
    return 0


class _StoppedBeforeServing(Exception):
    """SIGTERM or SIGINT came while the server was still starting."""


@contextlib.contextmanager
def _signals_abandon_the_start() -> Iterator[None]:
    """Until the event loop takes them over, SIGTERM and SIGINT end the
    start (loading models can take long) with _StoppedBeforeServing; the
    previous handlers are restored on leaving."""

    def abandon(signum: int, frame) -> None:
        raise _StoppedBeforeServing(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, abandon) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class ServerThread:
    """A ModelServer running its own loop in a background thread (tests,
    benchmarks). The models must load; `stop()` drains like a signal does."""

    def __init__(self, options: ServerOptions, repository: ModelRepository | None = None):
        load_op_libraries(options)
        repository = repository or ModelRepository(options.models, options.poll_seconds)
        repository.load_initial()  # before the server starts any thread
        self.server = ModelServer(options, repository)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tfkit-serve", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=60)
        except BaseException:
            self._stop_loop()
            raise

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.server.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=120)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
