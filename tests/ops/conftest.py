"""Fixtures of the operations kit tests: binaries, free ports, processes started and stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
T = TypeVar("T")


def binary(name: str) -> str:
    """Path of a required binary; scripts/setup.sh test installs all of them."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/setup.sh test`")
    return found


def run_tool(
    name: str, *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a required binary (``promtool``, ``amtool``, ...), its output captured as text."""
    return subprocess.run(
        [binary(name), *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def venv_binary(name: str) -> str:
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    return binary(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def get_json(url: str, timeout: float = 5.0) -> Any:
    return json.loads(http_get(url, timeout))


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.25,
    what: str | Callable[[], str] = "",
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds.

    ``what`` describes the wait in the failure message (a callable is asked then,
    e.g. for the tail of a log).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, urllib.error.URLError, ValueError) as error:
            last_error = error
        else:
            if value:
                return value
        time.sleep(interval)
    described = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {described or probe}: {last_error}")


class Processes:
    """Subprocesses started by a test; each is stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        log.close()
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return int(process.returncode)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            self.stop(process)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    manager = Processes(logs)
    try:
        yield manager
    finally:
        manager.stop_all()
