"""Real components for the reliability and security tests.

* :class:`CountingSink`: an OTLP/HTTP trace backend on loopback that counts (and
  keeps) every span it receives; it can be stopped and started again on the same
  port to play a backend that goes down for a while.
* :class:`CollectorProcess`: the real ``python -m llmspans.collector --config FILE`` in a
  subprocess, with its Prometheus endpoint parsed and its RSS read from ``/proc``.
* builders of valid OTLP requests (whole pipeline traces with unique ids) and a
  plain HTTP poster that returns status, headers and body.

Every test prints its figures (inputs tried, spans sent, forwarded, lost) through
:func:`figures`; run with ``-s`` to see them.
"""

from __future__ import annotations

import gzip
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

ROOT = Path(__file__).resolve().parents[2]
TRACES_PATH = "/v1/traces"
GRPC_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def figures(test: str, **numbers: object) -> None:
    """Print one line of figures for a test (visible with ``pytest -s``)."""
    parts = " ".join(f"{key}={value}" for key, value in numbers.items())
    print(f"\n[figures] {test}: {parts}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Upper bound of a wait for something that should happen soon. Waits return as soon
#: as the condition holds, so a generous bound costs nothing on a fast machine and
#: absorbs the stalls of a loaded one.
WAIT_S = 60.0


@contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port that refuses every connection while the block runs.

    The port is bound and never listened on: connections to it are refused, and no
    other socket can take it meanwhile (a port merely found free could be taken and
    start answering).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- building OTLP requests --------------------------------------------------

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def _next_id() -> int:
    with _ids_lock:
        return next(_ids)


def new_trace_id() -> bytes:
    return (os.getpid() << 64 | _next_id() | 1 << 127).to_bytes(16, "big")


def new_span_id() -> bytes:
    return (_next_id() | 1 << 62).to_bytes(8, "big")


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    raise TypeError(type(value))


def pipeline_trace(
    pipeline: str = "rag", *, now_ns: int | None = None, verified: bool = True
) -> list[Span]:
    """One whole, ended pipeline run: root + retrieval + context + generation + action."""
    trace_id = new_trace_id()
    root_id = new_span_id()
    start = now_ns if now_ns is not None else time.time_ns() - 50_000_000
    root = Span(
        trace_id=trace_id,
        span_id=root_id,
        name=f"invoke_workflow {pipeline}",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 40_000_000,
        attributes=[kv("llmspans.stage", "pipeline"), kv("llmspans.pipeline", pipeline)],
    )
    stages: list[tuple[str, str, list[KeyValue]]] = [
        (
            "retrieval faq",
            "retrieval",
            [
                kv("llmspans.retrieval.document_ids", ["d1", "d2", "d3"]),
                kv("llmspans.retrieval.scores", [0.9, 0.7, 0.2]),
            ],
        ),
        (
            "context_selection top",
            "context_selection",
            [
                kv("llmspans.context.input_ids", ["d1", "d2", "d3"]),
                kv("llmspans.context.selected_ids", ["d1", "d2"]),
            ],
        ),
        (
            "chat m",
            "generation",
            [
                kv("llmspans.generation.citations", ["d1"]),
                kv("gen_ai.usage.input_tokens", 100),
                kv("gen_ai.usage.output_tokens", 20),
            ],
        ),
        ("execute_tool act", "action", [kv("llmspans.action.verified", verified)]),
    ]
    spans = [root]
    for index, (name, stage, attributes) in enumerate(stages):
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=new_span_id(),
                parent_span_id=root_id,
                name=name,
                start_time_unix_nano=start + (index + 1) * 5_000_000,
                end_time_unix_nano=start + (index + 2) * 5_000_000,
                attributes=[
                    kv("llmspans.stage", stage),
                    kv("llmspans.pipeline", pipeline),
                    *attributes,
                ],
                status=Status(code=Status.STATUS_CODE_OK),
            )
        )
    return spans


def request_of(spans: Sequence[Span], service: str = "reliability") -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [kv("service.name", service)]},
                scope_spans=[ScopeSpans(scope={"name": "tests.reliability"}, spans=list(spans))],
            )
        ]
    )


def valid_request(traces: int, pipeline: str = "rag") -> tuple[ExportTraceServiceRequest, int]:
    """A request of ``traces`` whole runs and its span count."""
    spans = [span for _ in range(traces) for span in pipeline_trace(pipeline)]
    return request_of(spans), len(spans)


# --- plain HTTP client ----------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def post(
    url_host: str,
    port: int,
    body: bytes,
    *,
    content_type: str = "application/x-protobuf",
    headers: Mapping[str, str] | None = None,
    path: str = TRACES_PATH,
    timeout: float = 15.0,
    tls_context: Any = None,
) -> Reply:
    """POST ``body``; connection failures raise ``OSError``."""
    if tls_context is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url_host, port, timeout=timeout, context=tls_context
        )
    else:
        conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        conn.request("POST", path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def get(port: int, path: str, timeout: float = 5.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


# --- a counting OTLP/HTTP backend -------------------------------------------------


@dataclass
class _SinkState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    span_keys: set[tuple[bytes, bytes]] = field(default_factory=set)
    received: int = 0
    requests: int = 0
    bodies: list[bytes] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    status: int = 200


class CountingSink:
    """An OTLP/HTTP trace backend that counts every span (and keeps them when asked).

    ``received`` counts spans in accepted requests (duplicates included); ``unique``
    counts distinct (trace id, span id) pairs. ``stop()`` closes the listening
    socket so that senders see connection refused; ``start()`` listens again on the
    same port.

    While it is not listening (before ``start()``, after ``stop()``) the port stays
    bound by a socket that never listens: connections are refused as from a backend
    that is down, and no other socket can take the port in the meantime.
    """

    def __init__(self, port: int | None = None, keep: bool = False) -> None:
        self.keep = keep
        self.state = _SinkState()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reserved: socket.socket | None = None
        self.port = self._reserve(port or 0)

    def _reserve(self, port: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self._reserved = sock
        bound: int = sock.getsockname()[1]
        return bound

    def _release(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{TRACES_PATH}"

    @property
    def received(self) -> int:
        with self.state.lock:
            return self.state.received

    @property
    def unique(self) -> int:
        with self.state.lock:
            return len(self.state.span_keys)

    def spans(self) -> list[Span]:
        with self.state.lock:
            return list(self.state.spans)

    def bodies(self) -> list[bytes]:
        with self.state.lock:
            return list(self.state.bodies)

    def answer_with(self, status: int) -> None:
        """Answer every request with ``status`` (200 stores; anything else stores nothing)."""
        self.state.status = status

    def start(self) -> CountingSink:
        state = self.state
        keep = self.keep

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if state.status != 200:
                    self.send_response(state.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                gzipped = self.headers.get("Content-Encoding") == "gzip"
                body = gzip.decompress(raw) if gzipped else raw
                request = ExportTraceServiceRequest()
                if "json" in (self.headers.get("Content-Type") or ""):
                    from google.protobuf import json_format

                    json_format.Parse(body.decode(), request)
                else:
                    request.ParseFromString(body)
                spans = [
                    span
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
                with state.lock:
                    state.requests += 1
                    state.received += len(spans)
                    state.span_keys.update((s.trace_id, s.span_id) for s in spans)
                    if keep:
                        state.bodies.append(body)
                        state.spans.extend(spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._release()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self, *, keep_port: bool = True) -> None:
        """Stop listening; the port stays reserved unless ``keep_port`` is false."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            if keep_port:
                self._reserve(self.port)
        if not keep_port:
            self._release()


@pytest.fixture
def sink() -> Iterator[CountingSink]:
    backend = CountingSink(keep=True).start()
    yield backend
    backend.stop(keep_port=False)


# --- the collector in a subprocess ------------------------------------------------


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric_total(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name != name:
            continue
        as_dict = dict(sample_labels)
        if all(as_dict.get(k) == v for k, v in labels.items()):
            total += value
    return total


def label_values(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str
) -> set[str]:
    return {
        dict(sample_labels)[label]
        for (sample_name, sample_labels) in samples
        if sample_name == name and label in dict(sample_labels)
    }


class CollectorProcess:
    """``python -m llmspans.collector --config FILE`` on free loopback ports.

    The ports are chosen (and configured, e.g. in senders) before the collector
    starts; until it starts they stay bound by sockets that never listen, so that
    connections are refused and no other socket can take them meanwhile.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        exporters: list[dict[str, Any]] | None = None,
        grpc: bool = True,
        assembly: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
        tls: dict[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        open_files: int | None = None,
        cli_args: Sequence[str] = (),
    ) -> None:
        self.tmp = tmp
        self.open_files = open_files
        self.cli_args = list(cli_args)
        self._reserved: list[socket.socket] = []
        self.http_port = self._reserve_port()
        self.grpc_port = self._reserve_port() if grpc else None
        self.metrics_port = self._reserve_port()
        self.config: dict[str, Any] = {
            "receivers": {
                "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"} if grpc else None,
                "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
            },
            "metrics": {
                "prometheus": {"endpoint": f"127.0.0.1:{self.metrics_port}"},
                **(metrics or {}),
            },
            "assembly": {"trace_idle_s": 0.3, "trace_timeout_s": 10.0, **(assembly or {})},
            "exporters": exporters or [],
        }
        if limits:
            self.config["limits"] = limits
        if auth:
            self.config["auth"] = auth
        if tls:
            self.config["tls"] = tls
        self.config.update(extra or {})
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / f"collector-{self.http_port}.log"
        self.config_path = tmp / f"collector-{self.http_port}.yaml"

    def _reserve_port(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._reserved.append(sock)
        port: int = sock.getsockname()[1]
        return port

    def _release_ports(self) -> None:
        for sock in self._reserved:
            sock.close()
        self._reserved.clear()

    @property
    def tls(self) -> bool:
        return bool(self.config.get("tls", {}).get("cert_file"))

    def start(self, timeout: float = 60.0, attempts: int = 3) -> CollectorProcess:
        """Start and wait until ready; on a port taken meanwhile, retry on fresh ports."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except RuntimeError as error:
                taken = "already in use" in str(error) or "Failed to bind" in str(error)
                if not taken or attempt == attempts - 1:
                    raise
                self._new_ports()
        raise AssertionError("unreachable")

    def _new_ports(self) -> None:
        self.http_port = self._reserve_port()
        self.metrics_port = self._reserve_port()
        receivers = self.config["receivers"]
        receivers["http"] = {"endpoint": f"127.0.0.1:{self.http_port}"}
        self.config["metrics"]["prometheus"] = {"endpoint": f"127.0.0.1:{self.metrics_port}"}
        if self.grpc_port is not None:
            self.grpc_port = self._reserve_port()
            receivers["grpc"] = {"endpoint": f"127.0.0.1:{self.grpc_port}"}

    def _start(self, timeout: float) -> CollectorProcess:
        self.config_path.write_text(yaml.safe_dump(self.config))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        log = self.log_path.open("ab")
        self._release_ports()  # the collector binds them now
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmspans.collector",
                "--config",
                str(self.config_path),
                *self.cli_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if self.open_files:
            # Before the collector opens its sockets (it takes a second to import).
            import resource

            limit = (self.open_files, self.open_files)
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, limit)
        log.close()
        ports = [self.http_port, self.metrics_port]
        if self.grpc_port:
            ports.append(self.grpc_port)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"collector exited {self.proc.returncode}:\n{self.log()}")
            try:
                if get(self.metrics_port, "/readyz", timeout=1.0).status != 200:
                    return False
            except OSError:
                return False
            for port in ports:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                except OSError:
                    return False
            return True

        try:
            is_ready = wait_until(ready, timeout, interval=0.1)
        except RuntimeError:
            self.log_path.rename(self.log_path.with_suffix(".failed.log"))
            raise
        if not is_ready:
            self.stop()
            raise RuntimeError(f"collector not ready in {timeout}s:\n{self.log()}")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def metrics_text(self) -> str:
        reply = get(self.metrics_port, "/metrics")
        assert reply.status == 200, reply
        return reply.body.decode()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.metrics_text())

    def post(self, body: bytes, **kwargs: Any) -> Reply:
        return post("127.0.0.1", self.http_port, body, **kwargs)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        self._release_ports()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    """Start collectors with the given config sections; every one is stopped afterwards."""
    started: list[CollectorProcess] = []

    def start(**kwargs: Any) -> CollectorProcess:
        process = CollectorProcess(tmp_path, **kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def http_exporter(sink: CountingSink, queue_size: int = 100_000) -> dict[str, Any]:
    return {"protocol": "http", "endpoint": sink.endpoint, "headers": {}, "queue_size": queue_size}


def requires_collector() -> None:
    try:
        import llmspans.collector.__main__  # noqa: F401
    except ImportError as error:
        pytest.skip(f"collector not importable yet: {error}")


def proto_spans(request: ExportTraceServiceRequest) -> list[Span]:
    return [s for r in request.resource_spans for sc in r.scope_spans for s in sc.spans]


def rss_sampler(process: CollectorProcess) -> tuple[threading.Event, list[int]]:
    """Sample the collector's RSS every 50 ms until the returned event is set."""
    stop = threading.Event()
    samples: list[int] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                samples.append(process.rss_bytes())
            except (OSError, RuntimeError, AssertionError):
                return
            stop.wait(0.05)

    threading.Thread(target=loop, daemon=True).start()
    return stop, samples


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


#: How many inputs each fuzz test tries (raise it for a longer run).
FUZZ_EXAMPLES = int(os.environ.get("LLMSPANS_FUZZ_EXAMPLES", "150"))


def fuzz_settings(*suppress: HealthCheck) -> settings:
    """Hypothesis settings shared by the fuzz tests: no deadline, large inputs allowed."""
    return settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *suppress],
    )
