"""The core is pure: it imports nothing from the collector and touches no global state."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llmspans.core

CORE = Path(llmspans.core.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_sources_never_import_the_collector() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        offending = {
            name for name in _imports(path) if name.split(".")[:2] == ["llmspans", "collector"]
        }
        assert not offending, f"{path.name} imports {offending}"


def test_importing_the_core_loads_no_collector_module() -> None:
    code = (
        "import sys\n"
        "import llmspans.core.convert, llmspans.core.runs, llmspans.core.attribution\n"
        "import llmspans.core.evaluate, llmspans.core.metrics, llmspans.core.report\n"
        "import llmspans.embedded, llmspans.analyze, llmspans.diverge, llmspans._tracefiles\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] == ['llmspans', 'collector'])\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_core_does_no_io() -> None:
    """Nothing in the core opens a file, prints or logs: reading trace files is
    ``llmspans._tracefiles``'s, the sockets are the adapters'."""
    for path in CORE.glob("*.py"):
        names = _imports(path)
        assert not names & {"logging", "socket", "urllib", "http", "subprocess", "os"}, path.name
        assert not names & {"io", "gzip", "zlib", "pathlib", "sys"}, path.name
        source = path.read_text(encoding="utf-8")
        assert "print(" not in source, path.name
        assert ".open(" not in source and "open(" not in source.replace(".open(", ""), path.name


def test_core_reads_no_span_wire_format() -> None:
    """The core converts decoded data only: the OTLP protobuf span decoders are the
    collector's (``llmspans.collector._protobuf``). (The OTLP metrics the core writes,
    in exposition.py, are output, not input.)"""
    span_wire = (
        "google.protobuf",
        "opentelemetry.proto.trace",
        "opentelemetry.proto.collector.trace",
    )
    for path in CORE.glob("*.py"):
        wire = {name for name in _imports(path) if name.startswith(span_wire)}
        assert not wire, f"{path.name} imports {wire}"
