"""Forwarding: every span goes on to every configured exporter.

Each exporter owns a bounded queue of serialised ``ExportTraceServiceRequest``
payloads, counted in spans (``queue_size``) and in bytes (``queue_bytes``, its share
of ``limits.max_queue_bytes``). Workers take several queued payloads at once and send
them as one request: serialised protobuf messages concatenate into their merge,
so joining payloads is a byte join, not a re-encoding. OTLP exporters (HTTP or
gRPC) retry with exponential backoff, honour ``Retry-After`` and gRPC
``RetryInfo``, and give up on a batch only after ``retry_max_elapsed_s`` or on a
permanent error; dropped spans are counted. The ``file`` exporter appends OTLP
JSON lines (one export request per line) that ``llmspans analyze`` reads.

The queues never drop silently: when an exporter has no room, :meth:`Forwarder.room`
says so and the receivers answer with backpressure.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gzip
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]  # no type stubs published
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from llmspans.collector._wire import protobuf_to_json
from llmspans.collector.config import ConfigError, ExporterConfig, FileExporter, OtlpExporter

if TYPE_CHECKING:
    from llmspans.collector.metrics import MetricsStore

__all__ = ["Exporter", "FileWriter", "Forwarder", "GrpcExporter", "HttpExporter", "retry_wait"]

_log = logging.getLogger("llmspans.collector.forwarding")

_EXPORT_METHOD: Final = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRYABLE_HTTP: Final = frozenset({408, 429, 502, 503, 504})
_RETRYABLE_GRPC: Final = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_BACKOFF_START_S: Final = 0.1
_BACKOFF_MAX_S: Final = 5.0
_MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
#: Seconds between two summaries of an outage in the log.
OUTAGE_SUMMARY_S: Final = 30.0
#: Upper bound of the jitter added to a server-requested retry delay.
_MAX_RETRY_JITTER_S: Final = 1.0


def retry_wait(
    delay: float | None, backoff: float, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds to wait before the next attempt.

    Without a server-requested delay: the exponential ``backoff`` with ±20 % jitter.
    With one (``Retry-After``, gRPC ``RetryInfo``): that delay plus up to 20 % of it
    (at most :data:`_MAX_RETRY_JITTER_S`), never less: the collectors and senders a
    backend told the same delay would otherwise all come back in the same instant.
    """
    if delay is None:
        return backoff * uniform(0.8, 1.2)
    return delay + uniform(0.0, min(0.2 * delay, _MAX_RETRY_JITTER_S))


class _Retry(Exception):
    """A transient failure; ``delay`` is the server's requested wait, if it gave one."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class _Permanent(Exception):
    """A failure that retrying cannot fix."""


class Exporter(abc.ABC):
    """A bounded queue of payloads and the workers that send them.

    Subclasses implement :meth:`_send`. The queue and its span count are touched only
    on the event loop thread.
    """

    concurrency = 1
    max_batch_spans = 8192

    def __init__(self, name: str, queue_size: int, metrics: MetricsStore) -> None:
        self.name = name
        self.queue_size = queue_size
        self.metrics = metrics
        self.queued_spans = 0
        # spans taken off the queue and being sent right now
        self.sending_spans = 0
        # the same in bytes of payload, against ``queue_bytes``
        self.queue_bytes = 2**62
        self.queued_bytes = 0
        self.sending_bytes = 0
        self._queue: deque[tuple[bytes, int]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False
        # monotonic time the current outage began (None: the backend takes batches)
        self.outage_since: float | None = None
        self.outage_dropped = 0
        self._outage_logged = 0.0
        self._outage_failures = 0

    def room(self, spans: int, size: int = 0) -> bool:
        """Whether ``spans`` more (``size`` bytes) fit; what is being sent or retried
        still counts."""
        return (
            self.queued_spans + self.sending_spans + spans <= self.queue_size
            and self.queued_bytes + self.sending_bytes + size <= self.queue_bytes
        )

    def submit(self, payload: bytes, spans: int) -> None:
        """Queue one payload (already admitted: the bound is checked by :meth:`room`)."""
        self._queue.append((payload, spans))
        self.queued_spans += spans
        self.queued_bytes += len(payload)
        self._idle.clear()
        self._wakeup.set()

    async def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"export-{self.name}-{index}")
            for index in range(self.concurrency)
        ]

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was sent (or given up); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the workers; spans still queued or being sent are counted as dropped.

        Called after the shutdown flush gave up (or finished): whatever is left
        would otherwise vanish without a trace in the metrics, so it is counted in
        ``llmspans_collector_spans_dropped`` and logged once.
        """
        self._closing = True
        # One snapshot on the event loop thread: the batch a worker is sending right
        # now is in ``sending_spans``, the rest in ``queued_spans``.
        lost = self.queued_spans + self.sending_spans
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._queue.clear()
        self.queued_spans = 0
        self.queued_bytes = 0
        if lost:
            self.metrics.count("llmspans_collector_spans_dropped", lost, exporter=self.name)
            _log.error("exporter %s: dropping %d spans still queued at shutdown", self.name, lost)
        self._idle.set()
        await self._close_transport()

    async def _close_transport(self) -> None:
        return None

    def _take(self) -> tuple[bytes, int]:
        parts: list[bytes] = []
        spans = 0
        size = 0
        queue = self._queue
        while queue and (
            not parts
            or (
                spans + queue[0][1] <= self.max_batch_spans
                and size + len(queue[0][0]) <= _MAX_BATCH_BYTES
            )
        ):
            payload, count = queue.popleft()
            parts.append(payload)
            spans += count
            size += len(payload)
        self.queued_spans -= spans
        self.sending_spans += spans
        self.queued_bytes -= size
        self.sending_bytes += size
        return (parts[0] if len(parts) == 1 else b"".join(parts)), spans

    async def _work(self) -> None:
        while True:
            if not self._queue:
                if self.sending_spans == 0:
                    self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            payload, spans = self._take()
            size = len(payload)
            try:
                delivered = await self._deliver(payload, spans)
            finally:
                self.sending_spans -= spans
                self.sending_bytes -= size
            if delivered:
                self.metrics.count("llmspans_collector_spans_forwarded", spans, exporter=self.name)
            else:
                self.metrics.count("llmspans_collector_spans_dropped", spans, exporter=self.name)
            if not self._queue and self.sending_spans == 0:
                self._idle.set()

    async def _deliver(self, payload: bytes, spans: int) -> bool:
        """Send with retries; True when the backend took the batch.

        Retries wait the delay the backend asked for (``Retry-After``, gRPC
        ``RetryInfo``), from the first failure on, else an exponential backoff;
        after ``_max_elapsed`` seconds of retries the batch is dropped.
        """
        sent, delay = await self._attempt(payload, spans)
        if sent is not None:
            return sent
        max_elapsed = self._max_elapsed()
        deadline = time.monotonic() + max_elapsed
        backoff = _BACKOFF_START_S
        while True:
            wait = retry_wait(delay, backoff)
            if time.monotonic() + wait > deadline:
                self.outage_dropped += spans
                _log.error(
                    "exporter %s: dropping %d spans after %.0f s of retries",
                    self.name,
                    spans,
                    max_elapsed,
                )
                return False
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)
            sent, delay = await self._attempt(payload, spans)
            if sent is not None:
                return sent

    async def _attempt(self, payload: bytes, spans: int) -> tuple[bool | None, float | None]:
        """One send: ``(True, None)`` taken, ``(False, None)`` refused for good (the
        batch is dropped), ``(None, delay)`` to be retried, after ``delay`` seconds
        when the backend asked for one."""
        try:
            await self._send(payload)
        except _Permanent as error:
            _log.error("exporter %s: dropping %d spans: %s", self.name, spans, error)
            return False, None
        except _Retry as error:
            self._failing(error)
            return None, error.delay
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failing(error)
            return None, None
        self._recovered()
        return True, None

    # --- outages: one line when one starts, a summary while it lasts, one when it ends ---

    def _failing(self, error: Exception) -> None:
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = self._outage_logged = now
            self._outage_failures = 1
            self.outage_dropped = 0
            _log.warning(
                "exporter %s: backend failing (%s); retrying, %d spans wait in the queue "
                "(summary every %.0f s until it recovers)",
                self.name,
                error,
                self.queued_spans + self.sending_spans,
                OUTAGE_SUMMARY_S,
            )
            return
        self._outage_failures += 1
        if now - self._outage_logged >= OUTAGE_SUMMARY_S:
            self._outage_logged = now
            _log.warning(
                "exporter %s: backend still failing after %.0f s (%s): %d attempts failed, "
                "%d spans queued, %d dropped so far",
                self.name,
                now - self.outage_since,
                error,
                self._outage_failures,
                self.queued_spans + self.sending_spans,
                self.outage_dropped,
            )

    def _recovered(self) -> None:
        if self.outage_since is None:
            return
        _log.warning(
            "exporter %s: backend back after %.1f s: %d attempts had failed, %d spans dropped "
            "meanwhile",
            self.name,
            time.monotonic() - self.outage_since,
            self._outage_failures,
            self.outage_dropped,
        )
        self.outage_since = None

    def _max_elapsed(self) -> float:
        return 60.0

    @abc.abstractmethod
    async def _send(self, payload: bytes) -> None:
        """Send one payload; raise :class:`_Retry` or :class:`_Permanent` on failure."""


def _check_partial_success(exporter: str, body: bytes) -> None:
    if not body:
        return
    try:
        response = ExportTraceServiceResponse.FromString(body)
    except Exception:
        return
    if response.partial_success.rejected_spans:
        _log.warning(
            "exporter %s: backend rejected %d spans: %s",
            exporter,
            response.partial_success.rejected_spans,
            response.partial_success.error_message,
        )


class _OtlpExporter(Exporter):
    """What both OTLP exporters take from their configuration: queue, concurrency,
    batch size and how long a batch is retried."""

    def __init__(self, config: OtlpExporter, name: str, metrics: MetricsStore) -> None:
        super().__init__(name, config.queue_size, metrics)
        self.config = config
        self.concurrency = config.concurrency
        self.max_batch_spans = config.max_batch_spans

    def _max_elapsed(self) -> float:
        return self.config.retry_max_elapsed_s


class HttpExporter(_OtlpExporter):
    """OTLP/HTTP protobuf to ``endpoint`` (a full URL, usually ending in ``/v1/traces``)."""

    def __init__(self, config: OtlpExporter, name: str, metrics: MetricsStore) -> None:
        super().__init__(config, name, metrics)
        self._session: aiohttp.ClientSession | None = None
        headers = {"Content-Type": "application/x-protobuf", **config.headers}
        if config.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        self._headers = headers

    async def _send(self, payload: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
            )
        if self.config.compression == "gzip":
            payload = gzip.compress(payload, compresslevel=1)
        try:
            async with self._session.post(
                self.config.endpoint, data=payload, headers=self._headers
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _Retry(f"{type(error).__name__}: {error}") from None
        if 200 <= status < 300:
            _check_partial_success(self.name, body)
            return
        message = f"HTTP {status} from {self.config.endpoint}: {body[:200]!r}"
        if status in _RETRYABLE_HTTP:
            delay: float | None = None
            if retry_after is not None:
                with contextlib.suppress(ValueError):
                    delay = max(0.0, float(retry_after))
            raise _Retry(message, delay)
        raise _Permanent(message)

    async def _close_transport(self) -> None:
        if self._session is not None:
            await self._session.close()


def _grpc_target(endpoint: str) -> str:
    for prefix in ("http://", "https://", "grpc://"):
        if endpoint.startswith(prefix):
            return endpoint[len(prefix) :].rstrip("/")
    return endpoint


def _retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay a gRPC error carries, if any."""
    metadata = error.trailing_metadata() or ()
    for key, value in metadata:
        info: Any = None
        if key == "google.rpc.retryinfo-bin" and isinstance(value, bytes):
            info = error_details_pb2.RetryInfo.FromString(value)
        elif key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
        if info is not None:
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def _identity(value: bytes) -> bytes:
    return value


class GrpcExporter(_OtlpExporter):
    """OTLP/gRPC to ``endpoint`` (``host:port``); payload bytes go out as they are."""

    def __init__(self, config: OtlpExporter, name: str, metrics: MetricsStore) -> None:
        super().__init__(config, name, metrics)
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._metadata = tuple((key.lower(), value) for key, value in config.headers.items())

    async def _send(self, payload: bytes) -> None:
        if self._channel is None:
            target = _grpc_target(self.config.endpoint)
            options = [("grpc.max_send_message_length", -1)]
            compression = grpc.Compression.Gzip if self.config.compression == "gzip" else None
            if self.config.insecure and not self.config.endpoint.startswith("https://"):
                self._channel = grpc.aio.insecure_channel(
                    target, options=options, compression=compression
                )
            else:
                self._channel = grpc.aio.secure_channel(
                    target, grpc.ssl_channel_credentials(), options=options, compression=compression
                )
            self._call = self._channel.unary_unary(
                _EXPORT_METHOD, request_serializer=_identity, response_deserializer=_identity
            )
        try:
            body = await self._call(
                payload, timeout=self.config.timeout_s, metadata=self._metadata or None
            )
        except grpc.aio.AioRpcError as error:
            message = f"gRPC {error.code().name} from {self.config.endpoint}: {error.details()}"
            if error.code() in _RETRYABLE_GRPC:
                raise _Retry(message, _retry_delay(error)) from None
            raise _Permanent(message) from None
        _check_partial_success(self.name, body)

    async def _close_transport(self) -> None:
        if self._channel is not None:
            await self._channel.close()


class FileWriter(Exporter):
    """OTLP JSON lines, one export request per line (what ``llmspans analyze`` reads)."""

    max_batch_spans = 4096

    def __init__(self, config: FileExporter, name: str, metrics: MetricsStore) -> None:
        super().__init__(name, config.queue_size, metrics)
        self.path = Path(config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    async def _send(self, payload: bytes) -> None:
        line = json.dumps(protobuf_to_json(payload), separators=(",", ":"))
        self._file.write(line + "\n")
        self._file.flush()

    async def _deliver(self, payload: bytes, spans: int) -> bool:
        try:
            await self._send(payload)
        except OSError as error:
            _log.error("exporter %s: cannot write %s: %s", self.name, self.path, error)
            return False
        return True

    async def _close_transport(self) -> None:
        self._file.close()


def make_exporter(config: ExporterConfig, index: int, metrics: MetricsStore) -> Exporter:
    name = config.name or f"{config.protocol}-{index}"
    if isinstance(config, FileExporter):
        try:
            return FileWriter(config, name, metrics)
        except OSError as error:
            reason = error.strerror or str(error)
            raise ConfigError(
                f"exporters[{index}].path: cannot open {config.path} for appending: {reason}"
            ) from None
    if config.protocol == "grpc":
        return GrpcExporter(config, name, metrics)
    return HttpExporter(config, name, metrics)


class Forwarder:
    """Fans each payload out to every exporter."""

    def __init__(self, exporters: list[Exporter]) -> None:
        self.exporters = exporters

    def room(self, spans: int, size: int = 0) -> bool:
        return all(exporter.room(spans, size) for exporter in self.exporters)

    def submit(self, payload: bytes, spans: int) -> None:
        if spans <= 0:
            return
        for exporter in self.exporters:
            exporter.submit(payload, spans)

    async def start(self) -> None:
        for exporter in self.exporters:
            await exporter.start()

    async def flush(self, timeout: float) -> bool:
        results = await asyncio.gather(*(e.flush(timeout) for e in self.exporters))
        return all(results)

    async def close(self) -> None:
        for exporter in self.exporters:
            await exporter.close()
