"""A real llmspans collector on free loopback ports, run as a subprocess for the demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from llmspans._demo.forward import EXPORTER_NAME

#: The collector's longest flush at shutdown; the demo waits a little longer before SIGKILL.
SHUTDOWN_TIMEOUT_S = 10.0


#: the demo's judge: a code evaluator shipped with the support example (no network)
DEMO_JUDGE = "llmspans.examples.support_rag.evaluation:judge"


def collector_config(
    out_dir: Path,
    http_port: int,
    metrics_port: int,
    forward: str | None,
    trace_idle_s: float,
    *,
    evaluators: list[str] | None = None,
) -> dict[str, Any]:
    """The demo's collector configuration (shaped like ``collector/collector.example.yaml``)."""
    exporters: list[dict[str, Any]] = [
        {"protocol": "file", "path": str(out_dir / "traces.jsonl")},
    ]
    if forward:
        # A target that dies mid-run costs seconds, not the minute of retries a
        # production collector allows; what is given up on is counted and reported.
        exporters.append(
            {
                "protocol": "http",
                "endpoint": forward,
                "name": EXPORTER_NAME,
                "timeout_s": 5.0,
                "retry_max_elapsed_s": 5.0,
            }
        )
    config: dict[str, Any] = {
        "receivers": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http_port}"}},
        "metrics": {"prometheus": {"endpoint": f"127.0.0.1:{metrics_port}"}},
        "assembly": {"trace_idle_s": trace_idle_s},
        "exporters": exporters,
        "shutdown": {"timeout_s": SHUTDOWN_TIMEOUT_S},
    }
    if evaluators:
        # Sampled runs are judged in the collector, as in production (docs/evaluation.md);
        # the queue holds every sampled run of a demo, so none is dropped for room.
        config["evaluation"] = {
            "evaluators": list(evaluators),
            "concurrency": 2,
            "queue_size": 10_000,
            "timeout_s": 10.0,
        }
    return config


class CollectorError(RuntimeError):
    """The collector did not start, or did not stop cleanly."""


#: What the collector logs once every server listens (``None`` for a disabled one).
_LISTENING = re.compile(r"llmspans collector listening: grpc=(\w+) http=(\d+) metrics=(\d+)")


class LocalCollector:
    """``python -m llmspans.collector --config DIR/collector.yaml``, run by the demo.

    Its servers bind port 0 on loopback themselves (a port picked in advance could be
    taken by another socket before the collector binds it); the ports are read from
    the collector's "listening" log line once it is ready. Its output goes to
    ``DIR/collector.log``; a failure to start raises :class:`CollectorError` with the
    end of that log.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        forward: str | None = None,
        trace_idle_s: float = 0.5,
        evaluators: list[str] | None = None,
    ) -> None:
        self.out_dir = out_dir
        #: known once :meth:`wait_ready` returns
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self.config_path = out_dir / "collector.yaml"
        self.log_path = out_dir / "collector.log"
        self.traces_path = out_dir / "traces.jsonl"
        self._config = collector_config(out_dir, 0, 0, forward, trace_idle_s, evaluators=evaluators)
        self._process: subprocess.Popen[bytes] | None = None

    def _port(self, port: int | None) -> int:
        if port is None:
            raise CollectorError("the collector's ports are known once it is ready")
        return port

    @property
    def traces_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port(self.http_port)}/v1/traces"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._port(self.metrics_port)}/metrics"

    def start(self, timeout_s: float = 60.0) -> None:
        """Launch the collector and wait until it is ready."""
        self.launch()
        self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the collector process without waiting (it takes a few seconds to import)."""
        self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False), "utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSPANS_COLLECTOR__")}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "llmspans.collector", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Ctrl-C in the terminal reaches the whole process group; the demo itself
                # stops the collector with SIGTERM, so that it flushes what it holds. The
                # demo launches the collector before it starts any thread of its own.
                preexec_fn=_ignore_sigint,  # noqa: PLW1509
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for ``/readyz``; :class:`CollectorError` if it exits or the time runs out."""
        if self._process is None:
            raise CollectorError("the collector was not launched")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise CollectorError(f"the collector exited at start:\n{self._log_tail()}")
            if self.metrics_port is None:
                self._read_ports()
            if (
                self.metrics_port is not None
                and _get_status(f"http://127.0.0.1:{self.metrics_port}/readyz") == 200
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise CollectorError(
            f"the collector was not ready within {timeout_s:.0f} s:\n{self._log_tail()}"
        )

    def scrape(self) -> str:
        """The text of ``/metrics``."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode("utf-8"))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S + 5.0) -> int | None:
        """SIGTERM (the collector finalises and flushes everything), then wait; the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        return process.returncode

    def _read_ports(self) -> None:
        try:
            found = _LISTENING.search(self.log_path.read_text("utf-8", errors="replace"))
        except OSError:
            return
        if found is not None:
            self.http_port, self.metrics_port = int(found.group(2)), int(found.group(3))

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalCollector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _ignore_sigint() -> None:
    # An ignored SIGINT survives exec, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None
