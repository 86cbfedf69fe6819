"""Connection trouble is logged once per kind, then counted and summarised."""

from __future__ import annotations

import logging

import pytest

from llmspans.collector.connections import OnceLog


def test_once_log_logs_the_first_of_each_kind_then_summarises(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr("llmspans.collector.connections.time.monotonic", lambda: now[0])
    log = OnceLog(logging.getLogger("test.oncelog"), interval=60.0)
    with caplog.at_level(logging.WARNING, logger="test.oncelog"):
        for _ in range(1000):
            log("accept:EMFILE", "accept() failed: %s", "EMFILE")
        log("http:limit", "closing connections (%s)", "limit")
        assert len(caplog.records) == 2  # one line per kind, not per occurrence
        now[0] += 61.0
        log("accept:EMFILE", "accept() failed: %s", "EMFILE")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert messages[2] == "accept:EMFILE: 1000 more in the last 61 s"
