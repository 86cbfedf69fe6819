"""Fixtures of the benchmark smoke tests: run a benchmark script, read its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_out(tmp_path: Path) -> Path:
    """A private output folder, so a smoke run never overwrites real results."""
    out = tmp_path / "out"
    out.mkdir()
    return out


@pytest.fixture
def run_script(bench_out: Path) -> Callable[..., dict[str, Any]]:
    """Runs ``benchmarks/SCRIPT`` with this interpreter; returns ``out/NAME.json``."""

    def run(script: str, *args: str, result: str, timeout: float = 240) -> dict[str, Any]:
        env = {**os.environ, "LLMSPANS_BENCH_OUT": str(bench_out)}
        proc = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=BENCHMARKS.parent,
        )
        assert proc.returncode == 0, (
            f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        path = bench_out / f"{result}.json"
        assert path.exists(), f"{script} wrote no {path.name}: {proc.stderr[-2000:]}"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    return run
