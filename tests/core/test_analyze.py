"""``llmspans analyze``: the command over OTLP JSON lines, text and JSON output."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from llmspans.cli import main
from llmspans.core.report import quantile

from .test_embedded import write_otlp_json_lines

Tracing = tuple[TracerProvider, InMemorySpanExporter]


def _recorded(tracing: Tracing, path: Path) -> None:
    """Two runs of "rag" (one success, one retrieval failure) and a feedback trace."""
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    for completed, documents in [(True, ["d1", "d2"]), (None, [])]:
        attributes: dict[str, Any] = {A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: "rag"}
        if completed is not None:
            attributes[A.TASK_COMPLETED] = completed
        with tracer.start_as_current_span("invoke_workflow rag", attributes=attributes):
            with tracer.start_as_current_span(
                "retrieval faq",
                attributes={A.STAGE: A.STAGE_RETRIEVAL, A.RETRIEVAL_DOCUMENT_IDS: documents},
            ):
                pass
            with tracer.start_as_current_span(
                "chat m",
                attributes={
                    A.STAGE: A.STAGE_GENERATION,
                    A.COST_USD: 0.25,
                    A.GENERATION_CONFIDENCE: 0.9,
                },
            ):
                pass
    with tracer.start_as_current_span(
        "feedback edit",
        attributes={A.STAGE: A.STAGE_FEEDBACK, A.PIPELINE: "rag", A.FEEDBACK_KIND: "edit"},
    ):
        pass
    write_otlp_json_lines(exporter.get_finished_spans(), path, per_line=3)


def test_text_report(tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "traces.jsonl"
    _recorded(tracing, path)
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 traces, 7 spans" in out
    assert "pipeline rag: 2 runs (success 1, failure 1, unverified 0); completion rate 50.0%" in out
    retrieval_row = next(line for line in out.splitlines() if line.strip().startswith("retrieval"))
    assert retrieval_row.split()[1:3] == ["2", "0"] and retrieval_row.endswith("1  empty 1")
    assert "cost $0.500000; per successful outcome $0.500000" in out
    # bin 9 holds both runs: one correct, confidences summing to 1.8 -> |1 - 1.8| / 2
    assert "ECE 0.400 (n=2)" in out
    assert "feedback edit 1" in out


def test_json_report(tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "traces.jsonl"
    _recorded(tracing, path)
    assert main(["analyze", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rag = report["pipelines"]["rag"]
    assert rag["runs"] == 2
    assert rag["outcomes"] == {"success": 1, "failure": 1, "unverified": 0}
    assert rag["completion_rate"] == 0.5
    assert rag["stages"]["retrieval"]["failures_by_reason"] == {"empty": 1}
    assert rag["stages"]["generation"]["calls"] == 2
    assert rag["cost_usd"] == 0.5 and rag["cost_per_success_usd"] == 0.5
    assert rag["calibration"]["runs"] == 2
    assert rag["feedback"] == {"edit": 1}
    assert report["skipped_lines"] == []


def test_bad_lines_are_reported_and_the_rest_is_kept(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.jsonl"
    _recorded(tracing, good)
    lines = good.read_text().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        "\n".join([lines[0], "garbage", *lines[1:], '{"resourceSpans": 5}']).encode()
        + b"\n\xff\xfe{not utf8\n"
    )
    assert main(["analyze", str(mixed), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["pipelines"]["rag"]["runs"] == 2
    assert [entry["line"] for entry in report["skipped_lines"]] == [
        2,
        len(lines) + 2,
        len(lines) + 3,
    ]
    assert "skipped line 2: invalid JSON" in captured.err
    assert f"skipped line {len(lines) + 2}: resourceSpans: expected an array" in captured.err


def test_stdin_and_exit_codes(tracing: Tracing, tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    _recorded(tracing, path)
    command = [sys.executable, "-m", "llmspans.cli", "analyze"]
    done = subprocess.run(
        [*command, "-", "--json"],
        input=path.read_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pipelines"]["rag"]["runs"] == 2

    missing = subprocess.run(
        [*command, str(tmp_path / "nope.jsonl")], capture_output=True, timeout=60, check=False
    )
    assert missing.returncode == 1 and b"cannot read" in missing.stderr

    junk = tmp_path / "junk.jsonl"
    junk.write_text("nope\n[1]\n")
    unreadable = subprocess.run([*command, str(junk)], capture_output=True, timeout=60, check=False)
    assert unreadable.returncode == 2
    assert b"skipped line 1" in unreadable.stderr and b"skipped line 2" in unreadable.stderr

    bad_option = subprocess.run(
        [*command, str(path), "--min-citation-precision", "2"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert bad_option.returncode == 2 and b"[0, 1]" in bad_option.stderr


def test_empty_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert main(["analyze", str(empty)]) == 0
    assert "no pipeline runs or stage spans found" in capsys.readouterr().out


def test_quantile_interpolates() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0], 0.95) == 3.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([float(v) for v in range(1, 101)], 0.95) == pytest.approx(95.05)


def test_gzip_input(tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "traces.jsonl"
    _recorded(tracing, plain)
    packed = tmp_path / "traces.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert main(["analyze", str(packed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipelines"]["rag"]["runs"] == 2
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(plain.read_bytes())[:40])
    assert main(["analyze", str(broken)]) == 1
    assert "cannot read" in capsys.readouterr().err
