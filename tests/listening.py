"""Servers in subprocesses on ports they bind themselves.

A port picked in advance (bind to 0, close, hand the number to a process) can be
taken by any other socket before the process binds it. The servers the tests start
can bind port 0 themselves and log the port they got; these helpers read it back:

* Prometheus and Alertmanager: ``--web.listen-address=127.0.0.1:0`` and the log line
  ``msg="Listening on" address=127.0.0.1:PORT`` (:data:`PROMETHEUS_LISTENING`);
* the llmspans collector: ``endpoint: 127.0.0.1:0`` for each server and the log line
  ``llmspans collector listening: grpc=PORT http=PORT metrics=PORT``
  (:func:`collector_ports`).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

__all__ = [
    "COLLECTOR_LISTENING",
    "PROMETHEUS_LISTENING",
    "collector_ports",
    "logged_port",
    "wait_for_log",
]

#: What Prometheus and Alertmanager log once their web server listens.
PROMETHEUS_LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')
#: What the collector logs once every server listens (``None`` for a disabled one).
COLLECTOR_LISTENING = re.compile(
    r"llmspans collector listening: grpc=(\w+) http=(\w+) metrics=(\w+)"
)


def wait_for_log(
    process: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], timeout: float = 60.0
) -> re.Match[str]:
    """The first match of ``pattern`` in ``log``, waiting for it while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = pattern.search(text)
        if found is not None:
            return found
        tail = text[-3000:]
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern.pattern!r} not logged in {timeout:.0f} s:\n{tail}")
        time.sleep(0.05)


def logged_port(process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> int:
    """The port a Prometheus or Alertmanager started on ``127.0.0.1:0`` listens on."""
    return int(wait_for_log(process, log, PROMETHEUS_LISTENING, timeout).group(1))


def collector_ports(
    process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> dict[str, int | None]:
    """The ports of a collector whose servers were configured on ``127.0.0.1:0``."""
    found = wait_for_log(process, log, COLLECTOR_LISTENING, timeout)
    return {
        name: None if value == "None" else int(value)
        for name, value in zip(("grpc", "http", "metrics"), found.groups(), strict=True)
    }
