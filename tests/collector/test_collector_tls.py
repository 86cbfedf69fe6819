"""TLS on both receivers, with the SDK exporters trusting a test certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from collector_support import (
    RunningCollector,
    Sender,
    emit_run,
    grpc_sender,
    http_sender,
    wait_until,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)


def _certificate(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_both_receivers_serve_tls(
    tmp_path: Path,
    start_collector: Callable[..., RunningCollector],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests prefers these variables over the exporter's own certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = _certificate(tmp_path)
    collector = start_collector(tls={"cert_file": str(cert), "key_file": str(key)})
    assert collector.collector.http_port is not None
    https_url = f"https://127.0.0.1:{collector.collector.http_port}/v1/traces"
    sender = http_sender(https_url, certificate_file=str(cert))
    emit_run(sender.tracer, pipeline="tls-http")
    sender.close()
    grpc = Sender(
        GrpcSpanExporter(
            endpoint=collector.grpc_endpoint, insecure=False, credentials=_credentials(cert)
        )
    )
    emit_run(grpc.tracer, pipeline="tls-grpc")
    grpc.close()
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total", pipeline="tls-http") == 1)
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total", pipeline="tls-grpc") == 1)

    # Plaintext is refused on the TLS port: nothing arrives.
    plain = grpc_sender(collector.grpc_endpoint, timeout=2)
    emit_run(plain.tracer, pipeline="plaintext")
    plain.close()
    assert collector.metric("llmspans_collector_spans_received_total") == 10


def _credentials(cert: Path) -> object:
    import grpc

    return grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
