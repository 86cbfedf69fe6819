"""Wiring: receivers, processor, exporters, metrics server, and the shutdown sequence.

Everything runs on one asyncio event loop (uvloop when installed): the gRPC and
HTTP receivers, the finalising sweep, the exporters' workers, the ``/metrics``
server and the optional OTLP metrics push. The processor's state is touched only
from that loop, so it needs no locks.

SIGTERM (and SIGINT): stop accepting (listeners close; calls in progress get a
short grace), finalise every in-flight trace, flush the exporters, count what they
could not deliver, push metrics a last time, exit 0: all within
``shutdown.timeout_s`` in total.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable
from typing import Final

import aiohttp
import grpc
from aiohttp import web

from llmspans.collector.budget import ByteBudget
from llmspans.collector.config import CollectorSettings, ConfigError, split_host_port
from llmspans.collector.connections import (
    ConnectionErrors,
    GuardedSite,
    ListenerGuard,
    OnceLog,
    guard_middleware,
)
from llmspans.collector.forwarding import Forwarder, make_exporter
from llmspans.collector.metrics import MetricsStore, otlp_request
from llmspans.collector.processor import SWEEP_LIMIT, Processor
from llmspans.collector.receivers.grpc import GrpcReceiver
from llmspans.collector.receivers.http import HttpReceiver

__all__ = ["Collector", "run"]

_log = logging.getLogger("llmspans.collector")

#: allocations between young-generation collections while the collector runs
GC_YOUNG_THRESHOLD: Final = 50_000

#: seconds left to requests between two steps of a burst of due traces
SWEEP_PAUSE_S: Final = 0.005

_OPENMETRICS: Final = "application/openmetrics-text"
_METRICS_EXPORT: Final = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def _identity(value: bytes) -> bytes:
    return value


class Collector:
    """One collector instance. ``await start()``, then ``await stop()``."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        config = settings.metrics
        self.metrics = MetricsStore(
            config.max_pipelines,
            config.ece_window,
            config.pipelines,
            config.max_segments,
            config.segments,
        )
        self.forwarder = Forwarder(
            [
                make_exporter(config, index, self.metrics)
                for index, config in enumerate(settings.exporters)
            ]
        )
        limits = settings.limits
        queue_share = limits.max_queue_bytes // max(1, len(self.forwarder.exporters))
        for exporter in self.forwarder.exporters:
            exporter.queue_bytes = queue_share
        self.receive_budget = ByteBudget("receive", limits.max_receive_bytes)
        self.processor = Processor(settings, self.metrics, self.forwarder)
        self._connection_log = OnceLog(_log)
        self._guards: list[ListenerGuard] = []
        self._register_gauges()
        self.grpc: GrpcReceiver | None = None
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self._http_runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self._push_session: aiohttp.ClientSession | None = None
        self._push_channel: grpc.aio.Channel | None = None

    def _register_gauges(self) -> None:
        limits = self.settings.limits
        gauges = self.metrics.gauges
        processor = self.processor
        gauges["llmspans_collector_receive_bytes"] = lambda: [((), float(self.receive_budget.used))]
        gauges["llmspans_collector_forward_queue_bytes"] = lambda: [
            ((("exporter", e.name),), float(e.queued_bytes + e.sending_bytes))
            for e in self.forwarder.exporters
        ]
        gauges["llmspans_collector_inflight_bytes"] = lambda: [
            ((), float(processor.assembler.inflight_bytes))
        ]
        budgets = (
            ("receive", limits.max_receive_bytes),
            ("queue", limits.max_queue_bytes),
            ("inflight", limits.max_inflight_bytes),
            ("total", limits.max_memory_bytes),
        )
        gauges["llmspans_collector_memory_limit_bytes"] = lambda: [
            ((("budget", name),), float(value)) for name, value in budgets
        ]
        evaluation = processor.evaluation
        if evaluation is not None:
            gauges["llmspans_collector_evaluation_queue_runs"] = lambda: [
                ((("state", state),), float(count))
                for state, count in zip(
                    ("queued", "running"), evaluation.runner.depth(), strict=True
                )
            ]
        gauges["llmspans_collector_connections"] = lambda: [
            ((("listener", guard.name),), float(guard.open)) for guard in self._guards
        ]

    def _sync_counters(self) -> None:
        """Counters kept elsewhere, copied into the store before it is read."""
        truncated = self.processor.ids_truncated
        if truncated:
            self.metrics.health[("llmspans_collector_ids_truncated", ())] = float(truncated)

    def _guard(self, name: str) -> ListenerGuard:
        connections = self.settings.connections
        guard = ListenerGuard(
            name,
            self.metrics,
            connections.max_connections,
            connections.header_timeout_s,
            self._connection_log,
        )
        self._guards.append(guard)
        return guard

    # --- start ------------------------------------------------------------------------

    def _server_ssl(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls.cert_file is None or tls.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                f"tls: cannot load {tls.cert_file} / {tls.key_file}: {error}"
            ) from None
        return context

    def _grpc_credentials(self) -> grpc.ServerCredentials | None:
        tls = self.settings.tls
        if tls.cert_file is None or tls.key_file is None:
            return None
        try:
            pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
        except OSError as error:
            raise ConfigError(f"tls: cannot read {error.filename}: {error.strerror}") from None
        return grpc.ssl_server_credentials([pair])

    def _listeners(self) -> list[tuple[str, str]]:
        """(config key, endpoint) of every listening socket the settings ask for."""
        settings = self.settings
        found = []
        if settings.receivers.grpc is not None:
            found.append(("receivers.grpc.endpoint", settings.receivers.grpc.endpoint))
        if settings.receivers.http is not None:
            found.append(("receivers.http.endpoint", settings.receivers.http.endpoint))
        if settings.metrics.prometheus is not None:
            found.append(("metrics.prometheus.endpoint", settings.metrics.prometheus.endpoint))
        return found

    async def start(self) -> None:
        """Bind everything; :class:`ConfigError` (one line) when something cannot be."""
        settings = self.settings
        for key, endpoint in self._listeners():
            check_can_listen(key, endpoint)
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(ConnectionErrors(self.metrics, self._connection_log))
        await self.forwarder.start()
        connections = settings.connections
        request_limit = settings.limits.request_limit
        grace = _grace(settings.shutdown.timeout_s)
        prometheus = settings.metrics.prometheus
        if prometheus is not None:
            guard = self._guard("metrics")
            app = web.Application(middlewares=[guard_middleware(guard)])
            app.router.add_get("/metrics", self._metrics_handler)
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            self._metrics_runner, self.metrics_port = await _serve(
                app,
                "metrics.prometheus.endpoint",
                prometheus.endpoint,
                ssl_context=None,
                timeout=grace,
                guard=guard,
                idle_timeout_s=connections.idle_timeout_s,
            )
        receivers = settings.receivers
        if receivers.grpc is not None:
            self.grpc = GrpcReceiver(
                self.processor,
                receivers.grpc.endpoint,
                request_limit,
                settings.auth.bearer_token,
                self._grpc_credentials(),
                budget=self.receive_budget,
                connections=connections,
            )
            await self.grpc.start()
        if receivers.http is not None:
            receiver = HttpReceiver(
                self.processor,
                request_limit,
                settings.auth.bearer_token,
                budget=self.receive_budget,
                body_timeout_s=connections.body_timeout_s,
            )
            guard = self._guard("http")
            # The receiver reads and caps bodies itself; aiohttp's own cap stays out of it.
            app = web.Application(
                client_max_size=request_limit + 1, middlewares=[guard_middleware(guard)]
            )
            app.router.add_routes(receiver.routes())
            self._http_runner, self.http_port = await _serve(
                app,
                "receivers.http.endpoint",
                receivers.http.endpoint,
                ssl_context=self._server_ssl(),
                timeout=grace,
                guard=guard,
                idle_timeout_s=connections.idle_timeout_s,
            )
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="sweep"))
        if settings.metrics.otlp.endpoint is not None:
            self._tasks.append(asyncio.create_task(self._push_loop(), name="metrics-push"))
        self._ready = True
        _log.info(
            "llmspans collector listening: grpc=%s http=%s metrics=%s",
            self.grpc.port if self.grpc else None,
            self.http_port,
            self.metrics_port,
        )

    # --- background work ----------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        interval = self.settings.assembly.sweep_interval_s
        while True:
            await asyncio.sleep(interval)
            # Work off a burst of due traces in steps, letting requests in between:
            # a pause, not a bare yield, so that a request needing several turns of
            # the loop (accept, read, answer) finishes between two steps.
            while self.processor.safe_sweep() >= SWEEP_LIMIT:
                await asyncio.sleep(SWEEP_PAUSE_S)

    async def _push_loop(self) -> None:
        interval = self.settings.metrics.otlp.interval_s
        while True:
            await asyncio.sleep(interval)
            await self.push_metrics()

    async def push_metrics(self) -> bool:
        """Push every metric over OTLP once; False (logged) when the push failed."""
        config = self.settings.metrics.otlp
        if config.endpoint is None:
            return False
        resource = (
            ("service.name", "llmspans-collector"),
            ("service.instance.id", self.settings.metrics.service_instance_id),
        )
        self._sync_counters()
        payload = otlp_request(self.metrics, resource).SerializeToString()
        try:
            if config.protocol == "http":
                if self._push_session is None:
                    self._push_session = aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=config.timeout_s)
                    )
                headers = {"Content-Type": "application/x-protobuf", **config.headers}
                async with self._push_session.post(
                    config.endpoint, data=payload, headers=headers
                ) as response:
                    await response.read()
                    if response.status >= 300:
                        raise RuntimeError(f"HTTP {response.status}")
            else:
                if self._push_channel is None:
                    target = config.endpoint.removeprefix("http://").rstrip("/")
                    self._push_channel = grpc.aio.insecure_channel(target)
                call = self._push_channel.unary_unary(
                    _METRICS_EXPORT, request_serializer=_identity, response_deserializer=_identity
                )
                await call(
                    payload,
                    timeout=config.timeout_s,
                    metadata=tuple((k.lower(), v) for k, v in config.headers.items()) or None,
                )
        except (aiohttp.ClientError, grpc.aio.AioRpcError, RuntimeError, TimeoutError) as error:
            _log.warning("metrics push to %s failed: %s", config.endpoint, error)
            self.metrics.count("llmspans_collector_internal_errors", kind="metrics_push")
            return False
        return True

    # --- HTTP handlers of the metrics server ---------------------------------------------

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        openmetrics = _OPENMETRICS in request.headers.get("Accept", "")
        self._sync_counters()
        text = self.metrics.render(openmetrics=openmetrics)
        content_type = (
            f"{_OPENMETRICS}; version=1.0.0; charset=utf-8"
            if openmetrics
            else "text/plain; version=0.0.4; charset=utf-8"
        )
        return web.Response(body=text.encode(), headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self._ready or self.processor.overloaded or self.receive_budget.near:
            return web.Response(status=503, text="not ready\n")
        return web.Response(text="ready\n")

    # --- stop -------------------------------------------------------------------------------

    async def stop(self, quiet: bool = False) -> None:
        """The SIGTERM sequence: stop accepting, finalise, flush, close, push.

        All of it within ``shutdown.timeout_s`` in total, whatever the backend and
        slow clients do: calls in progress get :func:`_grace` seconds, the exporters
        what is left but a reserve for the last metrics push. Spans the exporters
        could not deliver by then are counted in ``spans_dropped_total`` and logged
        (``Exporter.close``) *before* that push, so the push carries them.

        ``quiet``: after a start that failed, release what was opened, logging nothing.
        """
        settings = self.settings
        loop = asyncio.get_running_loop()
        timeout = settings.shutdown.timeout_s
        deadline = loop.time() + timeout
        pushing = settings.metrics.otlp.endpoint is not None
        # kept for the last push and the closing steps after the flush
        reserve = min(timeout / 5, settings.metrics.otlp.timeout_s if pushing else 1.0)
        self._ready = False
        grace = _grace(timeout)
        if self.grpc is not None:
            await _bounded(self.grpc.stop(grace), grace + 1.0, "closing the gRPC receiver")
        if self._http_runner is not None:
            await _bounded(self._http_runner.cleanup(), grace + 1.0, "closing the HTTP receiver")
            self._http_runner = None
        self.processor.closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        finalised = self.processor.drain()
        flush_for = max(0.0, deadline - reserve - loop.time())
        flushed = await self.forwarder.flush(flush_for)
        if not flushed:
            _log.error(
                "shutdown: exporters did not flush within %.1f s (shutdown.timeout_s %.0f s)",
                flush_for,
                timeout,
            )
        await _bounded(self.forwarder.close(), max(0.5, reserve / 2), "closing the exporters")
        if pushing:
            await _bounded(
                self.push_metrics(), max(0.1, deadline - loop.time()), "the last metrics push"
            )
        if self._push_session is not None:
            await self._push_session.close()
        if self._push_channel is not None:
            await self._push_channel.close()
        if self._metrics_runner is not None:
            await _bounded(self._metrics_runner.cleanup(), 1.0, "closing the metrics server")
            self._metrics_runner = None
        if not quiet:
            _log.info("llmspans collector stopped; %d traces finalised at shutdown", finalised)


async def _bounded(step: Awaitable[object], seconds: float, what: str) -> None:
    """Await one shutdown step for at most ``seconds``; log when it is cut short."""
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        _log.error("shutdown: %s took longer than %.1f s; cut short", what, seconds)


def check_can_listen(key: str, endpoint: str) -> None:
    """Raise :class:`ConfigError` when ``endpoint`` cannot be listened on (in use,
    an unknown host, a privileged port), before any server starts: one clear line
    instead of a traceback from deep inside a server library."""
    host, port = split_host_port(endpoint)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        raise ConfigError(f"{key} {endpoint}: cannot resolve the host: {error}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The servers set SO_REUSEADDR too: a port left in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = error.strerror or str(error)
            raise ConfigError(f"{key} {endpoint}: cannot listen: {reason}") from None


def _grace(timeout_s: float) -> float:
    """Seconds calls in progress get to finish when the listeners close at SIGTERM:
    a fifth of ``shutdown.timeout_s`` (at most 5 s), the rest is for flushing."""
    return min(5.0, timeout_s / 5)


async def _serve(
    app: web.Application,
    key: str,
    endpoint: str,
    *,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
    guard: ListenerGuard,
    idle_timeout_s: float,
) -> tuple[web.AppRunner, int]:
    host, port = split_host_port(endpoint)
    # The receiver decompresses bodies itself, streaming and capped (gzip bombs).
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=timeout,
        auto_decompress=False,
        keepalive_timeout=idle_timeout_s,
    )
    await runner.setup()
    site = GuardedSite(runner, guard, host=host, port=port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        reason = error.strerror or str(error)
        raise ConfigError(f"{key} {endpoint}: cannot listen: {reason}") from None
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound


async def run(settings: CollectorSettings) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    collector = Collector(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await collector.start()
    except ConfigError:
        await collector.stop(quiet=True)
        raise
    # Everything allocated during start-up (modules, schemas, servers) lives as
    # long as the process: moved out of the collector's generations, full
    # collections no longer walk it while spans are in flight.
    gc.freeze()
    # Each span allocates a record, tuples and strings that form no reference cycles
    # and live until their trace is final. With the default young-generation
    # threshold (700 allocations) a young collection ran every few spans and cost
    # about 2 us per span (10 % of the work in process); at 50,000 it costs a
    # quarter of that. Cyclic garbage (rare here: asyncio exceptions) waits a
    # little longer; memory per in-flight span is unchanged (benchmarks/bench_memory.py).
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
    await stop.wait()
    _log.info("shutting down")
    await collector.stop()
    return 0
