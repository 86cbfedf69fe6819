"""The OTLP receivers under measurement, each started as its own process on free ports.

- :class:`LlmspansCollector`: ``python -m llmspans.collector --config FILE`` with attribution,
  metrics (Prometheus endpoint) and forwarding on; it forwards to a counting
  OTLP/HTTP sink (``sink.py``), which parses every forwarded request, so the
  numbers include the cost of re-encoding and shipping every span.
- :class:`Rotel`: the ``rotel`` Rust pass-through collector with its ``blackhole``
  exporter (accepts, batches, drops): the ceiling of a native receiver.
- :class:`NaiveSink`: a bare Python receiver that parses each request and walks
  every attribute of every span into a dict.
- :class:`Phoenix`: Arize Phoenix ingesting into its own database.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from _common import (
    HERE,
    OUT,
    PYTHON,
    ROOT,
    Proc,
    free_port,
    http_get,
    http_post,
    parse_prometheus,
    port_open,
    wait_until,
)

#: ``limits.max_memory_bytes`` per span meant to be in flight: the processor counts
#: about 760 bytes for one of the load's spans against the in-flight budget, which is
#: 40 % of the total (so 1,900 bytes of the total per span); about twice that for room.
MEMORY_BYTES_PER_INFLIGHT_SPAN = 4_000


class Target:
    name = "target"
    proc: Proc

    def http_endpoint(self) -> str:
        raise NotImplementedError

    def grpc_endpoint(self) -> str | None:
        return None

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CountingSink(Target):
    """``sink.py``: counts what it receives (``--naive``: walks every attribute)."""

    def __init__(self, naive: bool = False, name: str | None = None) -> None:
        self.name = name or ("python-naive" if naive else "sink")
        self.port = free_port()
        argv = [PYTHON, str(HERE / "sink.py"), "--port", str(self.port)]
        if naive:
            argv.append("--naive")
        self.proc = Proc(self.name, argv)
        wait_until(lambda: port_open(self.port) or self._dead(), 30, what=f"{self.name} listening")
        self.proc.check_alive()

    def _dead(self) -> bool:
        self.proc.check_alive()
        return False

    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def stats(self) -> dict[str, int]:
        status, body = http_get(f"http://127.0.0.1:{self.port}/stats")
        if status != 200:
            raise RuntimeError(f"sink stats: HTTP {status}")
        data: dict[str, int] = json.loads(body)
        return data


class LlmspansCollector(Target):
    """The llmspans collector, forwarding to a :class:`CountingSink` (started here);
    ``evaluation`` is its config's evaluation section (none: evaluation off).
    ``max_memory_bytes`` raises the byte budgets (``limits.max_memory_bytes``, whose
    default bounds what is in flight to about 150 MiB) for a measurement that holds
    more than that on purpose.

    ``tree`` is the checkout to run (this one by default; an older checkout, where the
    collector was the top-level package ``collector``, runs as that); ``wrapper`` is a
    command put in front of the interpreter (a profiler, valgrind), which then needs a
    longer ``ready_timeout_s``."""

    def __init__(
        self,
        name: str = "llmspans-collector",
        *,
        trace_idle_s: float = 2.0,
        trace_timeout_s: float = 60.0,
        max_inflight_spans: int = 1_000_000,
        finalized_cache_size: int = 100_000,
        forward: bool = True,
        extra_env: dict[str, str] | None = None,
        evaluation: dict[str, Any] | None = None,
        max_memory_bytes: int | None = None,
        tree: Path = ROOT,
        wrapper: Sequence[str] = (),
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.trace_idle_s = trace_idle_s
        self.sink = CountingSink(name=f"{name}-sink") if forward else None
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        exporters: list[dict[str, Any]] = []
        if self.sink is not None:
            exporters.append(
                {
                    "protocol": "http",
                    "endpoint": self.sink.http_endpoint(),
                    "queue_size": max(max_inflight_spans, 100_000),
                }
            )
        config = {
            "receivers": {
                "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
            },
            "metrics": {
                "prometheus": {"endpoint": f"127.0.0.1:{self.metrics_port}"},
                "max_pipelines": 50,
            },
            "assembly": {
                "trace_idle_s": trace_idle_s,
                "trace_timeout_s": trace_timeout_s,
                "max_inflight_spans": max_inflight_spans,
                "finalized_cache_size": finalized_cache_size,
            },
            "limits": {"max_request_bytes": 64 << 20},
            "attribution": {"min_score": None, "min_citation_precision": 1.0},
            "exporters": exporters,
        }
        if evaluation is not None:
            config["evaluation"] = evaluation
        if max_memory_bytes is not None:
            config["limits"]["max_memory_bytes"] = max_memory_bytes
        OUT.mkdir(parents=True, exist_ok=True)
        self.config_path = OUT / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {"PYTHONPATH": str(tree), **(extra_env or {})}
        module = collector_module(tree)
        command = [*wrapper, PYTHON, "-m", module, "--config", str(self.config_path)]
        self.proc = Proc(name, command, env=env, cwd=tree)
        try:
            wait_until(
                self._ready,
                ready_timeout_s,
                interval=max(0.1, ready_timeout_s / 300),
                what=f"{name} /readyz",
            )
        except Exception:
            self.stop()
            raise

    def _ready(self) -> bool:
        self.proc.check_alive()
        if not port_open(self.metrics_port):
            return False
        status, _ = http_get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1)
        return status == 200

    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def metrics_text(self) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics: HTTP {status}")
        return body.decode()

    def metrics(self) -> dict[str, float]:
        return parse_prometheus(self.metrics_text())

    def stop(self, timeout: float = 15.0) -> None:
        self.proc.stop(timeout)
        if self.sink is not None:
            self.sink.stop()


class Rotel(Target):
    """rotel with the blackhole exporter (``rotel-agent`` binary from the ``rotel`` wheel)."""

    name = "rotel"

    def __init__(self) -> None:
        binary = rotel_binary()
        if binary is None:
            raise FileNotFoundError("rotel is not installed (pip install rotel)")
        self.grpc_port, self.http_port = free_port(), free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="rotel-"))
        self.proc = Proc(
            "rotel",
            [
                str(binary),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.http_port}",
                "--otlp-grpc-max-recv-msg-size-mib",
                "64",
                "--exporter",
                "blackhole",
                "--pid-file",
                str(self._tmp / "rotel.pid"),
                "--log-file",
                str(self._tmp / "rotel.log"),
            ],
        )
        wait_until(lambda: self._check() and port_open(self.http_port), 30, what="rotel listening")

    def _check(self) -> bool:
        self.proc.check_alive()
        return True

    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


def rotel_binary() -> Path | None:
    try:
        import rotel
    except ImportError:
        return None
    path = Path(rotel.__file__).parent / "rotel-agent"
    return path if path.exists() else None


class Phoenix(Target):
    """``phoenix serve`` on loopback with a fresh working directory."""

    name = "phoenix"
    project = "bench"

    def __init__(self) -> None:
        exe = shutil.which("phoenix", path=str(Path(PYTHON).parent))
        if exe is None:
            raise FileNotFoundError("arize-phoenix is not installed")
        self.port, self.grpc_port = free_port(), free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="phoenix-"))
        env = {
            "PHOENIX_WORKING_DIR": str(self._tmp),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
        }
        self.proc = Proc("phoenix", [exe, "serve"], env={**os.environ, **env})
        self.startup_s = wait_until(self._healthy, 120, interval=0.25, what="phoenix /healthz")

    def _healthy(self) -> bool:
        self.proc.check_alive()
        status, _ = http_get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
        return status == 200

    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stored_spans(self) -> int:
        query = {"query": "{ projects { edges { node { name recordCount } } } }"}
        status, body = http_post(
            f"http://127.0.0.1:{self.port}/graphql", json.dumps(query).encode(), "application/json"
        )
        if status != 200:
            raise RuntimeError(f"phoenix graphql: HTTP {status}: {body[:200]!r}")
        edges = json.loads(body)["data"]["projects"]["edges"]
        return sum(int(e["node"]["recordCount"]) for e in edges)

    def stop(self) -> None:
        self.proc.stop(timeout=20)
        shutil.rmtree(self._tmp, ignore_errors=True)


def collector_module(tree: Path) -> str:
    """The collector's module in a checkout: ``llmspans.collector``, or ``collector`` in
    one from before it moved into the ``llmspans`` package."""
    if (tree / "llmspans" / "collector" / "__main__.py").is_file():
        return "llmspans.collector"
    if (tree / "collector" / "__main__.py").is_file():
        return "collector"
    raise FileNotFoundError(f"no collector package in {tree}")


def collector_available() -> bool:
    return (ROOT / "llmspans" / "collector" / "__main__.py").exists()


def now() -> float:
    return time.perf_counter()
