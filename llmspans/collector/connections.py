"""Bounds on connections: a cap per listener, header and idle timeouts, quiet accept errors.

aiohttp has no cap on connections and no header timeout of its own, so every
aiohttp listener (the OTLP/HTTP receiver, the metrics server) serves through
:class:`GuardedSite`: each connection's protocol is wrapped by :class:`_Guarded`,
which

* closes a connection at once when the listener already has ``max_connections``
  (the file descriptor is freed right away: a flood of idle connections cannot
  exhaust the process's open-file limit and starve the other listeners);
* closes a connection whose request header is not complete ``header_timeout_s``
  after it connected, or after the first byte of a later request (slowloris);
* leaves idle keep-alive connections to aiohttp's ``keepalive_timeout``, set to
  ``idle_timeout_s``.

The request handler marks the start and the end of each request through
:func:`request_started` / :func:`request_finished` (the middleware of
:func:`guard_middleware`). The gRPC receiver gets the same bounds from the gRPC
runtime's own options (see :mod:`llmspans.collector.receivers.grpc`).

Errors of ``accept()`` (the open-file limit reached, for instance) are reported by
the event loop once per occurrence, which under a connection flood means a log line
per attempt. :class:`ConnectionErrors` takes them over: logged once per kind, then
counted, with a summary at most every :data:`SUMMARY_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.typedefs import Middleware

from llmspans.collector.metrics import MetricsStore

__all__ = ["ConnectionErrors", "GuardedSite", "ListenerGuard", "guard_middleware"]

_log = logging.getLogger("llmspans.collector.connections")

#: At most one summary line per kind of connection trouble in this many seconds.
SUMMARY_INTERVAL_S: Final = 60.0
_REFUSED: Final = "llmspans_collector_connections_refused"


class OnceLog:
    """Log the first occurrence of each kind, then count and summarise at intervals."""

    def __init__(self, logger: logging.Logger, interval: float = SUMMARY_INTERVAL_S) -> None:
        self.logger = logger
        self.interval = interval
        # kind -> [occurrences not yet summarised, monotonic time of the last line]
        self._kinds: dict[str, list[float]] = {}

    def __call__(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        state = self._kinds.get(kind)
        if state is None:
            self._kinds[kind] = [0.0, now]
            self.logger.warning(
                message + " (logged once; further ones are counted and summarised)", *args
            )
            return
        state[0] += 1
        elapsed = now - state[1]
        if elapsed >= self.interval:
            self.logger.warning("%s: %d more in the last %.0f s", kind, state[0], elapsed)
            state[0], state[1] = 0.0, now


class ListenerGuard:
    """The connection bounds of one aiohttp listener and its open connections."""

    def __init__(
        self,
        name: str,
        metrics: MetricsStore,
        max_connections: int,
        header_timeout_s: float,
        log: OnceLog,
    ) -> None:
        self.name = name
        self.metrics = metrics
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.log = log
        self.open = 0
        self._by_handler: dict[object, _Guarded] = {}

    def refused(self, reason: str) -> None:
        self.metrics.count(_REFUSED, listener=self.name, reason=reason)
        self.log(
            f"{self.name}:{reason}",
            "%s: closing connections (%s)",
            self.name,
            reason,
        )

    def started(self, handler: object) -> None:
        guarded = self._by_handler.get(handler)
        if guarded is not None:
            guarded.request_started()

    def finished(self, handler: object) -> None:
        guarded = self._by_handler.get(handler)
        if guarded is not None:
            guarded.request_finished()


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's protocol of one connection: the cap and the header timeout."""

    def __init__(self, guard: ListenerGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self._counted = False
        self._in_request = False
        self._header_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        guard = self.guard
        if guard.open >= guard.max_connections:
            self.transport.abort()
            guard.refused("limit")
            return
        guard.open += 1
        self._counted = True
        guard._by_handler[self.inner] = self
        self._start_header_clock()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._counted:
            return
        if not self._in_request and self._header_timer is None:
            # the first byte of a new request after an idle keep-alive pause
            self._start_header_clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self._counted:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        if not self._counted:
            return
        self._counted = False
        self.guard.open -= 1
        self.guard._by_handler.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._counted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._counted:
            self.inner.resume_writing()

    # --- the header clock ---------------------------------------------------------------

    def _start_header_clock(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self.guard.header_timeout_s, self._header_late)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self._in_request or self.transport is None:
            return
        self.guard.refused("header_timeout")
        self.transport.abort()

    def request_started(self) -> None:
        self._in_request = True
        self._stop_header_clock()

    def request_finished(self) -> None:
        self._in_request = False


def guard_middleware(guard: ListenerGuard) -> Middleware:
    """The aiohttp middleware that tells the guard when a request's header was read."""

    @web.middleware
    async def middleware(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        protocol = request.protocol
        guard.started(protocol)
        try:
            return await handler(request)
        finally:
            guard.finished(protocol)

    return middleware


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through the listener's :class:`ListenerGuard`."""

    def __init__(self, runner: web.AppRunner, guard: ListenerGuard, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        # TCPSite.start, with the guard around aiohttp's protocol factory.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        guard = self.guard

        def factory() -> _Guarded:
            return _Guarded(guard, server())

        # A TLS handshake counts as header time: the guard sees a connection only
        # once its handshake is done.
        handshake = guard.header_timeout_s if self._ssl_context is not None else None
        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=handshake,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


class ConnectionErrors:
    """The event loop's exception handler: accept errors logged once per kind, counted.

    Anything else goes to the loop's default handler, as before.
    """

    def __init__(self, metrics: MetricsStore, log: OnceLog) -> None:
        self.metrics = metrics
        self.log = log

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        error = context.get("exception")
        if "accept" in message and isinstance(error, OSError):
            kind = errno.errorcode.get(error.errno or 0, type(error).__name__)
            self.metrics.count(_REFUSED, listener="accept", reason=f"accept_{kind}")
            self.log(f"accept:{kind}", "accept() failed: %s (%s)", kind, error.strerror)
            return
        loop.default_exception_handler(context)
