"""Configuration: the documented example loads; the environment overrides the file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmspans.collector.config import FileExporter, OtlpExporter, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "collector" / "collector.example.yaml"


def test_example_config_loads_with_documented_defaults() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.receivers.grpc is not None
    assert settings.receivers.grpc.endpoint == "127.0.0.1:4317"
    assert settings.assembly.trace_idle_s == 2.0
    assert settings.assembly.max_inflight_spans == 1_000_000
    assert settings.limits.max_request_bytes == 64 * 1024 * 1024
    assert isinstance(settings.exporters[0], OtlpExporter)
    assert isinstance(settings.exporters[1], FileExporter)
    assert settings.attribution.thresholds().min_citation_precision == 1.0


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "assembly: {trace_idle_s: 5, trace_timeout_s: 90}\n"
        "receivers: {grpc: {endpoint: '127.0.0.1:1'}}\n"
    )
    monkeypatch.setenv("LLMSPANS_COLLECTOR__ASSEMBLY__TRACE_IDLE_S", "0.5")
    monkeypatch.setenv("LLMSPANS_COLLECTOR__RECEIVERS__HTTP", "null")
    monkeypatch.setenv("LLMSPANS_COLLECTOR__AUTH__BEARER_TOKEN", "t0k")
    monkeypatch.setenv(
        "LLMSPANS_COLLECTOR__EXPORTERS", '[{"protocol": "grpc", "endpoint": "otel:4317"}]'
    )
    settings = load_settings(config)
    assert settings.assembly.trace_idle_s == 0.5
    assert settings.assembly.trace_timeout_s == 90  # from the file, not overridden
    assert settings.receivers.grpc is not None
    assert settings.receivers.grpc.endpoint == "127.0.0.1:1"
    assert settings.receivers.http is None
    assert settings.auth.bearer_token == "t0k"
    (exporter,) = settings.exporters
    assert isinstance(exporter, OtlpExporter) and exporter.protocol == "grpc"


@pytest.mark.parametrize(
    "text",
    [
        "assembly: {trace_idle_s: 10, trace_timeout_s: 5}",
        "assembly: {trace_idel_s: 1}",
        "tls: {cert_file: a.pem}",
        "exporters: [{protocol: carrier-pigeon, endpoint: x}]",
        "- just a list",
    ],
)
def test_invalid_configs_are_refused(tmp_path: Path, text: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises((ValidationError, ValueError)):
        load_settings(config)


def test_command_line_reports_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmspans.collector.__main__ import main

    # main() configures logging for its process (a root handler on this test's captured
    # stderr, the root level): undone afterwards so that no later test inherits it.
    monkeypatch.setattr(logging.root, "handlers", [])
    level = logging.root.level
    config = tmp_path / "c.yaml"
    config.write_text("limits: {max_request_bytes: 1}")
    try:
        assert main(["--config", str(config)]) == 2
    finally:
        logging.root.setLevel(level)
    assert "max_request_bytes" in capsys.readouterr().err
