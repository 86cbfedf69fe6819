"""The embedded mode's metric outlets: a ``/metrics`` endpoint and an OTLP push.

Both send what :mod:`llmspans.core.exposition` makes of the shared store, the same
text and the same OTLP the collector sends. Threads of their own, never traced
(they run with an empty OpenTelemetry context).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from opentelemetry import context as otel_context

from llmspans.core.exposition import OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE

__all__ = ["MetricsPusher", "MetricsServer"]

logger = logging.getLogger("llmspans")

#: How long the last push at shutdown may take: an unreachable endpoint must not hold
#: the app's exit for the exporter's usual half a minute.
SHUTDOWN_PUSH_TIMEOUT_S: Final = 2.0


def _untraced(target: Callable[[], None], name: str) -> threading.Thread:
    token = otel_context.attach(otel_context.Context())
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        otel_context.detach(token)
    return thread


class MetricsServer:
    """``GET /metrics`` (Prometheus text, or OpenMetrics when asked for) on ``host:port``;
    port 0 picks a free port (:attr:`port`)."""

    def __init__(self, render: Callable[[bool], str], host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                openmetrics = "application/openmetrics-text" in self.headers.get("Accept", "")
                body = render(openmetrics).encode("utf-8")
                self.send_response(200)
                self.send_header(
                    "Content-Type",
                    OPENMETRICS_CONTENT_TYPE if openmetrics else PROMETHEUS_CONTENT_TYPE,
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = _untraced(self._server.serve_forever, "llmspans-metrics")
        logger.info("llmspans metrics on http://%s:%d/metrics", host, self.port)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class MetricsPusher:
    """Pushes an OTLP metrics export every ``interval_s`` and once more at shutdown.

    ``payload`` returns the serialised ``ExportMetricsServiceRequest``. ``protocol``
    is ``http/protobuf`` (``endpoint`` a URL ending in ``/v1/metrics``) or ``grpc``
    (``endpoint`` ``host:port``, insecure unless it starts with ``https://``). A
    failure is logged once per kind of failure, with what to do about it.
    """

    def __init__(
        self,
        payload: Callable[[], bytes],
        endpoint: str,
        protocol: str = "http/protobuf",
        headers: Mapping[str, str] | None = None,
        interval_s: float = 60.0,
    ) -> None:
        self._payload = payload
        self._endpoint = endpoint
        self._protocol = protocol
        self._headers = dict(headers or {})
        self._interval_s = max(0.05, interval_s)
        self._stop = threading.Event()
        self._failures: set[str] = set()
        self._lock = threading.Lock()  # guards _failures; serialises pushes
        self._thread = _untraced(self._loop, "llmspans-metrics-push")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.push(timeout_s=10.0)

    def push(self, timeout_s: float) -> bool:
        """One push now; ``True`` when the endpoint took it."""
        with self._lock:
            try:
                body = self._payload()
                if self._protocol == "grpc":
                    self._push_grpc(body, timeout_s)
                else:
                    self._push_http(body, timeout_s)
            except Exception as error:
                self._failed(error)
                return False
            if self._failures:
                logger.info("llmspans metrics push to %s works again", self._endpoint)
                self._failures.clear()
            return True

    def _push_http(self, body: bytes, timeout_s: float) -> None:
        request = urllib.request.Request(
            self._endpoint,
            data=body,
            headers={"Content-Type": "application/x-protobuf", **self._headers},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()

    def _push_grpc(self, body: bytes, timeout_s: float) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )

        target = self._endpoint.removeprefix("http://")
        if target.startswith("https://"):
            channel = grpc.secure_channel(
                target.removeprefix("https://"), grpc.ssl_channel_credentials()
            )
        else:
            channel = grpc.insecure_channel(target)
        with channel:
            stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
            stub.Export(
                metrics_service_pb2.ExportMetricsServiceRequest.FromString(body),
                timeout=timeout_s,
                metadata=tuple(self._headers.items()),
            )

    def _failed(self, error: Exception) -> None:
        if isinstance(error, urllib.error.HTTPError):
            kind = f"HTTP {error.code}"
            hint = (
                " (the llmspans collector receives traces, not metrics: serve the metrics "
                "with configure(embedded=True, metrics_port=0), or point "
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT at a metrics backend)"
                if error.code == 404
                else ""
            )
        elif isinstance(error, OSError):  # refused, reset, timed out, name not found
            kind = "unreachable"
            hint = ""
        else:
            kind = type(error).__name__
            hint = ""
        if kind in self._failures:
            return
        self._failures.add(kind)
        logger.warning(
            "llmspans could not push metrics to %s: %s%s", self._endpoint, error, hint
        )

    def shutdown(self) -> None:
        """Stop the loop and push once more, waiting at most a couple of seconds."""
        self._stop.set()
        self._thread.join(timeout=SHUTDOWN_PUSH_TIMEOUT_S)
        if not self._thread.is_alive():  # else a push is under way: it is the last one
            self.push(timeout_s=SHUTDOWN_PUSH_TIMEOUT_S)
