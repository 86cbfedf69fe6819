"""Starting with a configuration it cannot run with: exit 2 and one clear line.

The real command line in a subprocess, as an operator runs it. Each case would
otherwise start the collector (every other endpoint is on port 0), so a case the
collector failed to refuse shows up as a timeout, not as a pass.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from llmspans.collector.config import ConfigError, FileExporter, load_settings

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def listening() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def config_text(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "receivers": {
            "grpc": {"endpoint": "127.0.0.1:0"},
            "http": {"endpoint": "127.0.0.1:0"},
        },
        "metrics": {"prometheus": {"endpoint": "127.0.0.1:0"}},
    }
    config.update(overrides)
    return config


def run_collector(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "llmspans.collector", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    print(f"\n[figures] exit={result.returncode} stderr_lines={len(lines)} line={lines!r}")
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = lines
    assert line.startswith("llmspans-collector: invalid configuration: ")
    for needle in needles:
        assert needle in line
    return line


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("receivers: {grpc: [unclosed\n", ("invalid YAML", "line")),
        (
            yaml.safe_dump(config_text(receivers={"grpc": {"endpoint": "not-a-hostport"}})),
            ("receivers.grpc.endpoint", "not host:port"),
        ),
        (
            yaml.safe_dump(config_text(receivers={"http": {"endpoint": "127.0.0.1:99999"}})),
            ("receivers.http.endpoint", "above 65535"),
        ),
        (yaml.safe_dump(config_text(auth={"bearer_token": ""})), ("auth.bearer_token", "empty")),
        (yaml.safe_dump(config_text(auth={"bearer_token": "  "})), ("auth.bearer_token", "empty")),
        (
            yaml.safe_dump(config_text(assembly={"trace_idle_s": 9, "trace_timeout_s": 1})),
            ("trace_timeout_s",),
        ),
    ],
    ids=["yaml-syntax", "not-host-port", "port-99999", "empty-token", "blank-token", "invalid"],
)
def test_invalid_configuration_exits_2_with_one_line(
    tmp_path: Path, text: str, needles: tuple[str, ...]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert_refused(run_collector(config), *needles)


@pytest.mark.parametrize("receiver", ["grpc", "http", "prometheus"])
def test_a_port_in_use_exits_2_with_one_line(tmp_path: Path, receiver: str) -> None:
    with listening() as port:
        config = config_text()
        endpoint = {"endpoint": f"127.0.0.1:{port}"}
        if receiver == "prometheus":
            config["metrics"] = {"prometheus": endpoint}
            key = "metrics.prometheus.endpoint"
        else:
            config["receivers"] = {**config["receivers"], receiver: endpoint}  # type: ignore[dict-item]
            key = f"receivers.{receiver}.endpoint"
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        assert_refused(run_collector(path), key, "in use")


def test_an_unwritable_exporter_file_exits_2_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where a directory should be")
    config = tmp_path / "c.yaml"
    exporters = [{"protocol": "file", "path": str(blocker / "traces.jsonl")}]
    config.write_text(yaml.safe_dump(config_text(exporters=exporters)))
    assert_refused(run_collector(config), "exporters[0].path", "cannot open")


def test_missing_tls_files_exit_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    tls = {"cert_file": "missing-cert.pem", "key_file": "missing-key.pem"}
    config.write_text(yaml.safe_dump(config_text(tls=tls)))
    assert_refused(run_collector(config), "tls", "missing-")


def test_a_missing_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    assert_refused(run_collector(tmp_path / "nowhere.yaml"), "nowhere.yaml", "cannot read")


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    # A configuration error after the options were taken: the option itself passed.
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(config_text(auth={"bearer_token": ""})))
    for level in ("debug", "Warning", "ERROR"):
        assert_refused(run_collector(config, "--log-level", level), "auth.bearer_token")


def test_help_names_the_real_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmspans.collector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    text = " ".join(result.stdout.split())
    assert "defaults apply" in text and "127.0.0.1:4318" in text
    assert "no exporters" in text


def test_relative_paths_are_resolved_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "exporters": [{"protocol": "file", "path": "out/traces.jsonl"}],
                "tls": {"cert_file": "tls/cert.pem", "key_file": "/abs/key.pem"},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("etc") / "c.yaml")
    (exporter,) = settings.exporters
    assert isinstance(exporter, FileExporter)
    assert exporter.path == folder / "out" / "traces.jsonl"
    assert settings.tls.cert_file == folder / "tls" / "cert.pem"
    assert settings.tls.key_file == Path("/abs/key.pem")


def test_every_config_problem_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("assembly: {trace_idel_s: 1}\nlimits: {max_request_bytes: 1}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "\n" not in message
    assert "assembly.trace_idel_s" in message and "limits.max_request_bytes" in message
