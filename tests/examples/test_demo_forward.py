"""``llmspans demo --forward URL``: checked once up front, never a silent wait, an honest count."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from llmspans._demo.forward import Delivery, check_url, probe
from tests.examples.loopback import LoopbackHandler, serving
from tests.examples.test_demo import _demo, _OtlpReceiver, otlp_receiver

__all__ = ["otlp_receiver"]  # the fixture, shared with test_demo


def _dead_url() -> str:
    """A loopback URL nothing listens on (the port was bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/traces"


class _RejectsSpans(LoopbackHandler):
    """Answers the empty probe, then refuses every real export (a permanent 400)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not body:
            self.reply(b"", "application/x-protobuf")
            return
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _NotFound(LoopbackHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_dead_target_is_one_line_up_front_and_the_run_does_not_wait_for_it(
    tmp_path: Path,
) -> None:
    url = _dead_url()
    started = time.monotonic()
    done = _demo(tmp_path, "--requests", "20", "--forward", url)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if "--forward" in line]
    assert warnings == [
        f"llmspans demo: --forward {url}: connection refused (nothing listens there); "
        "the demo runs without forwarding"
    ]
    assert f"not forwarded to {url}: connection refused" in done.stdout
    forward = json.loads((tmp_path / "demo.json").read_text())["forward"]
    assert forward["forwarded"] == 0 and forward["skipped"].startswith("connection refused")
    assert elapsed < 25, f"the demo took {elapsed:.1f} s"


def test_an_invalid_url_is_rejected_before_anything_starts(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--forward", "localhost:6006")
    assert done.returncode == 2
    assert "--forward: expected an http:// or https:// URL" in done.stderr
    assert not (tmp_path / "collector.log").exists()


def test_spans_the_target_refuses_are_counted_not_claimed(tmp_path: Path) -> None:
    with serving(_RejectsSpans) as base:
        url = f"{base}/v1/traces"
        done = _demo(tmp_path, "--requests", "20", "--forward", url)
    assert done.returncode == 1, done.stderr[-3000:]
    forward = json.loads((tmp_path / "demo.json").read_text())["forward"]
    assert forward["spans"] > 0
    assert forward["forwarded"] == 0 and forward["dropped"] == forward["spans"]
    assert f"forwarding to {url} incomplete: 0 of {forward['spans']} spans delivered" in (
        done.stdout
    )


def test_a_live_target_gets_every_span_and_the_report_says_so(
    tmp_path: Path, otlp_receiver: str
) -> None:
    done = _demo(tmp_path, "--requests", "20", "--forward", otlp_receiver)
    assert done.returncode == 0, done.stderr[-3000:]
    forward = json.loads((tmp_path / "demo.json").read_text())["forward"]
    assert forward["forwarded"] == forward["spans"] == len(_OtlpReceiver.spans)
    assert f"forwarded to {otlp_receiver}: all {forward['spans']} spans" in done.stdout


def test_probe_names_the_reason() -> None:
    assert probe(_dead_url()) == "connection refused (nothing listens there)"
    with serving(_NotFound) as base:
        reason = probe(f"{base}/v1/traces")
    assert reason is not None and reason.startswith("it answers HTTP 404")


@pytest.mark.parametrize("text", ["localhost:6006", "ftp://host/x", "http://", "http://h:port/x"])
def test_check_url_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"URL|port"):
        check_url(text)


def test_delivery_lines() -> None:
    assert Delivery("u", 10, 10, 0).line() == "forwarded to u: all 10 spans"
    partial = Delivery("u", 10, 4, 3)
    assert not partial.complete
    assert partial.line() == (
        "forwarding to u incomplete: 4 of 10 spans delivered, 3 given up on after retries, "
        "3 still queued when the demo stopped"
    )
