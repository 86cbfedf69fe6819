"""Security: auth and TLS on both receivers, no content on the wire unless enabled,
redaction before anything leaves the process, bounded label cardinality, request
size limits, and no deserialisation of untrusted formats beyond protobuf and JSON.
"""

from __future__ import annotations

import ast
import datetime
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import llmspans
from llmspans import _content
from llmspans._tracing import use_tracer_provider

from .support import (
    GRPC_EXPORT_METHOD,
    ROOT,
    WAIT_S,
    CollectorProcess,
    CountingSink,
    figures,
    gzip_bytes,
    http_exporter,
    label_values,
    metric_total,
    post,
    proto_spans,
    requires_collector,
    valid_request,
    wait_until,
)

Start = Callable[..., CollectorProcess]
TOKEN = "s3cret-token-for-tests"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _keys(request: Any) -> set[tuple[bytes, bytes]]:
    return {(s.trace_id, s.span_id) for s in proto_spans(request)}


# --- auth and TLS --------------------------------------------------------------------


def test_bearer_token_on_both_receivers_rejects_counts_and_takes_nothing(
    collector_factory: Start, sink: CountingSink
) -> None:
    import grpc

    requires_collector()
    collector = collector_factory(exporters=[http_exporter(sink)], auth={"bearer_token": TOKEN})
    refused_keys: set[tuple[bytes, bytes]] = set()
    accepted_keys: set[tuple[bytes, bytes]] = set()
    http_statuses = {}
    for label, headers in (
        ("missing", {}),
        ("wrong", {"Authorization": "Bearer not-the-token"}),
        ("wrong_scheme", {"Authorization": f"Basic {TOKEN}"}),
        ("right", {"Authorization": f"Bearer {TOKEN}"}),
    ):
        request, _ = valid_request(2)
        reply = collector.post(request.SerializeToString(), headers=headers)
        http_statuses[label] = reply.status
        (accepted_keys if label == "right" else refused_keys).update(_keys(request))
    grpc_codes = {}
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        export = channel.unary_unary(GRPC_EXPORT_METHOD)
        for label, metadata in (
            ("missing", ()),
            ("wrong", (("authorization", "Bearer nope"),)),
            ("right", (("authorization", f"Bearer {TOKEN}"),)),
        ):
            request, _ = valid_request(2)
            try:
                export(request.SerializeToString(), metadata=metadata, timeout=10)
                grpc_codes[label] = "OK"
                accepted_keys.update(_keys(request))
            except grpc.RpcError as error:
                grpc_codes[label] = error.code().name  # type: ignore[attr-defined]
                refused_keys.update(_keys(request))
    assert wait_until(lambda: accepted_keys <= sink.state.span_keys, WAIT_S)
    samples = collector.samples()
    rejected = metric_total(
        samples, "llmspans_collector_requests_rejected_total", reason="unauthenticated"
    )
    received = metric_total(samples, "llmspans_collector_spans_received_total")
    taken = len(refused_keys & sink.state.span_keys)
    figures(
        "bearer token",
        http=http_statuses,
        grpc=grpc_codes,
        rejected_counted=int(rejected),
        spans_received=int(received),
        spans_forwarded=sink.unique,
        refused_spans_taken=taken,
    )
    assert http_statuses == {"missing": 401, "wrong": 401, "wrong_scheme": 401, "right": 200}
    assert grpc_codes == {"missing": "UNAUTHENTICATED", "wrong": "UNAUTHENTICATED", "right": "OK"}
    assert rejected == 5
    assert taken == 0 and received == len(accepted_keys)


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    pytest.importorskip("cryptography")
    yield _self_signed(tmp_path)


def test_tls_on_both_receivers(
    collector_factory: Start,
    sink: CountingSink,
    tls_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import grpc

    requires_collector()
    # requests (under the SDK's HTTP exporter) lets these override certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = tls_files
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        tls={"cert_file": str(cert), "key_file": str(key)},
        auth={"bearer_token": TOKEN},
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    context = ssl.create_default_context(cafile=str(cert))
    expected: set[tuple[bytes, bytes]] = set()
    results: dict[str, Any] = {}

    request, _ = valid_request(2)
    reply = post(
        "127.0.0.1",
        collector.http_port,
        request.SerializeToString(),
        headers=auth,
        tls_context=context,
    )
    results["https"] = reply.status
    expected |= _keys(request)

    request, _ = valid_request(2)
    try:
        results["plain_http"] = collector.post(
            request.SerializeToString(), headers=auth, timeout=5
        ).status
    except OSError as error:
        results["plain_http"] = type(error).__name__
    plaintext_keys = _keys(request)

    try:
        post(
            "127.0.0.1",
            collector.http_port,
            b"",
            headers=auth,
            tls_context=ssl.create_default_context(),
        )
        results["untrusted_cert"] = "accepted"
    except ssl.SSLError as error:
        results["untrusted_cert"] = type(error).__name__

    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{collector.grpc_port}", credentials) as channel:
        request, _ = valid_request(2)
        channel.unary_unary(GRPC_EXPORT_METHOD)(
            request.SerializeToString(),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
            timeout=10,
        )
        results["grpc_tls"] = "OK"
        expected |= _keys(request)
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        request, _ = valid_request(2)
        try:
            channel.unary_unary(GRPC_EXPORT_METHOD)(
                request.SerializeToString(),
                metadata=(("authorization", f"Bearer {TOKEN}"),),
                timeout=5,
            )
            results["grpc_plaintext"] = "OK"
        except grpc.RpcError as error:
            results["grpc_plaintext"] = error.code().name  # type: ignore[attr-defined]
        plaintext_keys |= _keys(request)

    exporter = OTLPSpanExporter(
        endpoint=f"https://127.0.0.1:{collector.http_port}/v1/traces",
        certificate_file=str(cert),
        headers=auth,
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("tls").start_span("sdk over https").end()
    provider.shutdown()
    results["sdk_exporter_https"] = "sent"

    assert wait_until(lambda: expected <= sink.state.span_keys and sink.unique >= 21, WAIT_S)
    figures(
        "tls",
        **results,
        spans_forwarded=sink.unique,
        plaintext_spans_taken=len(plaintext_keys & sink.state.span_keys),
    )
    assert results["https"] == 200 and results["grpc_tls"] == "OK"
    assert results["plain_http"] != 200 and results["grpc_plaintext"] != "OK"
    assert results["untrusted_cert"] == "SSLCertVerificationError"
    assert not plaintext_keys & sink.state.span_keys


# --- content on the wire ---------------------------------------------------------------

SECRETS = ("SECRET-QUERY", "SECRET-DOC", "SECRET-PROMPT", "SECRET-ANSWER", "SECRET-ARG")


def _run_app(collector: CollectorProcess) -> None:
    """A decorated pipeline whose every argument and result holds a secret."""

    @llmspans.retrieval(data_source="kb")
    def search(query: str) -> list[dict[str, Any]]:
        return [{"id": "d1", "score": 0.9, "text": "SECRET-DOC body"}]

    @llmspans.generation(model="m")
    def generate(prompt: str) -> str:
        return "SECRET-ANSWER text"

    @llmspans.action(name="send")
    def send(argument: str) -> bool:
        return True

    @llmspans.pipeline("secrets")
    def handle(query: str) -> str:
        search(query)
        answer = generate(f"SECRET-PROMPT about {query}")
        send("SECRET-ARG")
        return answer

    provider = TracerProvider()
    configuration = llmspans.configure(
        tracer_provider=provider,
        endpoint=f"http://127.0.0.1:{collector.http_port}",
        set_global=False,
        propagate_context=False,
    )
    try:
        assert handle("SECRET-QUERY?") == "SECRET-ANSWER text"
    finally:
        configuration.shutdown()
        provider.shutdown()


@pytest.fixture
def content_settings() -> Iterator[None]:
    yield
    _content.set_capture(None)
    _content.set_redactor(None)
    _content.reload_environment()
    use_tracer_provider(None)


@pytest.mark.parametrize("mode", ["default_off", "on_with_redaction", "on_without_redaction"])
def test_content_reaches_the_backend_only_when_enabled_and_always_redacted(
    mode: str,
    collector_factory: Start,
    sink: CountingSink,
    monkeypatch: pytest.MonkeyPatch,
    content_settings: None,
) -> None:
    requires_collector()
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    _content.reload_environment()
    if mode != "default_off":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        _content.reload_environment()
    if mode == "on_with_redaction":
        _content.set_redactor(lambda text: text.replace("SECRET", "[REDACTED]"))
    collector = collector_factory(exporters=[http_exporter(sink)])
    _run_app(collector)
    assert wait_until(lambda: sink.unique >= 4, WAIT_S)
    wire = b"".join(sink.bodies())
    found = [secret for secret in SECRETS if secret.encode() in wire]
    figures(
        f"content on the wire ({mode})",
        spans_at_backend=sink.unique,
        bytes_inspected=len(wire),
        secrets_found=found or "none",
        redaction_marks=wire.count(b"[REDACTED]"),
    )
    if mode == "on_without_redaction":
        assert len(found) >= 3, "the inspection must be able to see content"
    else:
        assert found == []
    if mode == "on_with_redaction":
        assert wire.count(b"[REDACTED]") >= 3


def test_redaction_applied_before_anything_leaves_the_process(
    content_settings: None,
) -> None:
    """What the exporter is handed (the last step inside the process) is already redacted."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("4111-1111-1111-1111", "<card>")

    configuration = llmspans.configure(
        tracer_provider=provider,
        capture_content=True,
        redact=redact,
        set_global=False,
        propagate_context=False,
    )

    @llmspans.generation(model="m")
    def generate(prompt: str) -> str:
        return "charged 4111-1111-1111-1111"

    try:
        generate("pay with 4111-1111-1111-1111")
    finally:
        configuration.shutdown()
    rendered = repr([dict(span.attributes or {}) for span in exported.get_finished_spans()])
    figures(
        "redaction before export",
        hook_calls=len(seen),
        card_numbers_exported=rendered.count("4111"),
    )
    assert seen and "4111" not in rendered and "<card>" in rendered


# --- cardinality -----------------------------------------------------------------------


def test_pipeline_label_cardinality_bounded_in_the_collector(
    collector_factory: Start, sink: CountingSink
) -> None:
    requires_collector()
    limit = 10
    flood = 300
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        metrics={"max_pipelines": limit},
        assembly={"trace_idle_s": 0.2},
    )
    total = 0
    for start in range(0, flood, 50):
        spans = []
        from .support import pipeline_trace, request_of

        for index in range(start, start + 50):
            spans.extend(pipeline_trace(f"tenant-{index}"))
        total += len(spans)
        assert collector.post(request_of(spans).SerializeToString()).status == 200
    assert wait_until(
        lambda: metric_total(collector.samples(), "llmspans_task_outcomes_total") >= flood,
        WAIT_S,
    )
    samples = collector.samples()
    labels = label_values(samples, "llmspans_task_outcomes_total", "pipeline")
    series = sum(
        1 for (name, _) in samples if name.startswith("llmspans_") and "pipeline" in dict(_)
    )
    figures(
        "cardinality (collector)",
        distinct_pipelines_sent=flood,
        max_pipelines=limit,
        pipeline_label_values=len(labels),
        series_with_pipeline_label=series,
        other_runs=int(metric_total(samples, "llmspans_task_outcomes_total", pipeline="other")),
    )
    assert "other" in labels and len(labels) <= limit + 1
    assert metric_total(samples, "llmspans_task_outcomes_total") == flood


def test_pipeline_label_cardinality_bounded_in_embedded_mode() -> None:
    from llmspans.embedded import EmbeddedProcessor

    processor = EmbeddedProcessor(max_pipelines=5)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    previous = use_tracer_provider(provider)
    try:
        for index in range(200):

            @llmspans.pipeline(f"flood-{index}")
            def run() -> None:
                llmspans.set_outcome(completed=True)

            run()
        processor.force_flush()
    finally:
        use_tracer_provider(previous)
        provider.shutdown()
    labels = processor.store.aggregates.label_values("llmspans.task.outcomes", "pipeline")
    figures(
        "cardinality (embedded)", distinct_pipelines_sent=200, pipeline_label_values=len(labels)
    )
    assert "other" in labels and len(labels) <= 6


# --- request size limits ---------------------------------------------------------------


def test_request_size_limits_on_both_receivers(
    collector_factory: Start, sink: CountingSink
) -> None:
    import grpc

    requires_collector()
    limit = 1024 * 1024
    collector = collector_factory(
        exporters=[http_exporter(sink)], limits={"max_request_bytes": limit}
    )
    big, _ = valid_request(3_000)
    body = big.SerializeToString()
    # Between the limit and twice the limit the gRPC handler refuses and counts it;
    # beyond twice the limit the gRPC runtime refuses it before the handler runs.
    medium = valid_request(1_400)[0].SerializeToString()
    assert limit < len(medium) < 2 * limit < len(body)
    results: dict[str, Any] = {"request_bytes": len(body)}
    results["http_plain"] = collector.post(body).status
    results["http_gzip"] = collector.post(
        gzip_bytes(body), headers={"Content-Encoding": "gzip"}
    ).status
    bomb = gzip_bytes(b"\0" * (64 * limit))
    results["gzip_bomb_bytes"] = len(bomb)
    results["http_gzip_bomb"] = collector.post(bomb, headers={"Content-Encoding": "gzip"}).status
    with grpc.insecure_channel(
        f"127.0.0.1:{collector.grpc_port}",
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    ) as channel:
        export = channel.unary_unary(GRPC_EXPORT_METHOD)
        for label, payload in (("grpc", medium), ("grpc_huge", body)):
            try:
                export(payload, timeout=10)
                results[label] = "OK"
            except grpc.RpcError as error:
                results[label] = error.code().name  # type: ignore[attr-defined]
    small, small_count = valid_request(10)
    results["http_small"] = collector.post(small.SerializeToString()).status
    assert wait_until(lambda: _keys(small) <= sink.state.span_keys, WAIT_S)
    samples = collector.samples()
    results["too_large_counted"] = int(
        metric_total(samples, "llmspans_collector_requests_rejected_total", reason="too_large")
    )
    results["spans_forwarded"] = sink.unique
    figures("request size limits", **results)
    assert results["http_plain"] == results["http_gzip"] == results["http_gzip_bomb"] == 413
    assert results["grpc"] == results["grpc_huge"] == "RESOURCE_EXHAUSTED"
    assert results["http_small"] == 200
    assert sink.unique == small_count, "nothing of the refused requests was taken"
    assert results["too_large_counted"] >= 4


# --- no untrusted deserialisation ------------------------------------------------------

_FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
_FORBIDDEN_CALLS = {"eval", "exec", "__import__"}
_UNSAFE_YAML = {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}


def test_no_deserialisation_beyond_protobuf_and_json() -> None:
    """Static check of every module of the library and the collector."""
    files = sorted([*(ROOT / "llmspans").rglob("*.py"), *(ROOT / "collector").rglob("*.py")])
    findings: list[str] = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in _FORBIDDEN_MODULES:
                        findings.append(f"{where} imports {alias.name}")
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in _FORBIDDEN_MODULES:
                    findings.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in _FORBIDDEN_CALLS:
                    findings.append(f"{where} calls {func.id}()")
                if (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "yaml"
                    and func.attr in _UNSAFE_YAML
                ):
                    findings.append(f"{where} calls yaml.{func.attr}() (use yaml.safe_load)")
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in ("Unpickler", "loads")
                    and (isinstance(func.value, ast.Name) and func.value.id in _FORBIDDEN_MODULES)
                ):
                    findings.append(f"{where} calls {func.value.id}.{func.attr}()")
    figures("no untrusted deserialisation", files_scanned=len(files), findings=len(findings))
    assert len(files) > 20
    assert findings == [], "\n".join(findings)
