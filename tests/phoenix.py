"""Arize Phoenix as a real OTLP trace backend for tests.

``start_phoenix(workdir)`` starts ``phoenix serve`` offline and quiet on free
loopback ports (docs: /work/shared/RUNBOOK.md), with its output in a file, and
waits for ``/healthz``. The returned :class:`Phoenix` takes OTLP/HTTP at
:attr:`Phoenix.traces_url` and OTLP/gRPC at :attr:`Phoenix.grpc_endpoint`, and
reads spans back through its REST API; Phoenix answers before it stores, so
:meth:`Phoenix.wait_for_spans` polls.

Fixtures: ``phoenix`` (one server per test session, shared) and
``phoenix_factory`` (a fresh server per call, stopped at the end of the test).
Each test should send its spans under a project of its own (resource attribute
``openinference.project.name``, see :data:`PROJECT_ATTRIBUTE`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "PROJECT_ATTRIBUTE",
    "Phoenix",
    "phoenix",
    "phoenix_factory",
    "start_phoenix",
]

#: The resource attribute that picks the Phoenix project a span lands in.
PROJECT_ATTRIBUTE = "openinference.project.name"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _phoenix_command() -> list[str]:
    script = Path(sys.executable).with_name("phoenix")
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("phoenix")
    if found is None:
        pytest.skip("Arize Phoenix is not installed (pip install -e '.[backend]')")
    return [found, "serve"]


class Phoenix:
    """A running ``phoenix serve``; :meth:`stop` ends it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, grpc_port: int, log: Path):
        self.process = process
        self.port = port
        self.grpc_port = grpc_port
        self.log = log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return f"{self.base_url}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
            return json.loads(response.read())

    def spans(self, project: str = "default", limit: int = 1000) -> list[dict[str, Any]]:
        """Every span of ``project`` (empty when the project does not exist yet)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        quoted = urllib.parse.quote(project, safe="")
        while True:
            query = {"limit": str(min(limit, 1000))}
            if cursor:
                query["cursor"] = cursor
            try:
                page = self._get(f"/v1/projects/{quoted}/spans?{urllib.parse.urlencode(query)}")
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return []
                raise
            found.extend(page.get("data", []))
            cursor = page.get("next_cursor")
            if not cursor or len(found) >= limit:
                return found

    def wait_for_spans(
        self,
        project: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Poll until ``predicate(spans)`` holds; Phoenix stores a while after answering."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            spans = self.spans(project)
            if predicate(spans):
                return spans
            time.sleep(0.25)
        raise AssertionError(
            f"Phoenix project {project!r}: condition not met within {timeout} s; "
            f"{len(spans)} spans stored: {[span.get('name') for span in spans][:20]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_phoenix(workdir: Path, timeout: float = 90.0, attempts: int = 3) -> Phoenix:
    """Start Phoenix with its database and log under ``workdir``; wait until healthy.

    Phoenix takes its ports by number; one found free a moment before can be taken by
    another socket meanwhile. Phoenix then exits at start-up, and is started again on
    fresh ports.
    """
    for attempt in range(attempts):
        try:
            return _start_phoenix(workdir, timeout)
        except _PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class _PortTaken(RuntimeError):
    """Phoenix exited at start-up because a port it was given was in use."""


def _start_phoenix(workdir: Path, timeout: float) -> Phoenix:
    workdir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    }
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        env.pop(key, None)
    log = workdir / "phoenix.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            _phoenix_command(), env=env, stdout=output, stderr=subprocess.STDOUT, cwd=workdir
        )
    server = Phoenix(process, port, grpc_port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            lowered = tail.lower()
            taken = any(
                sign in lowered for sign in ("address already in use", "errno 98", "failed to bind")
            )
            error = _PortTaken if taken else RuntimeError
            raise error(f"phoenix serve exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(server.base_url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"phoenix serve not healthy after {timeout} s; log: {log}")


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """One Phoenix for the whole test session (it takes about 10 s to start)."""
    server = start_phoenix(tmp_path_factory.mktemp("phoenix"))
    yield server
    server.stop()


@pytest.fixture
def phoenix_factory(tmp_path: Path) -> Iterator[Callable[[], Phoenix]]:
    """Start fresh Phoenix servers; each is stopped when the test ends."""
    started: list[Phoenix] = []

    def start() -> Phoenix:
        server = start_phoenix(tmp_path / f"phoenix-{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
