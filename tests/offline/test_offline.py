"""``llmspans eval``: a labelled set through the app's own pipeline, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dataset(path: Path, lines: int = 240) -> Path:
    rows = []
    for index in range(lines):
        kind = index % 3
        if kind == 0:
            rows.append(
                {"id": f"b{index}", "input": "where is my invoice?", "segment": "billing",
                 "relevant_ids": ["bill-1"], "expected": "invoices are sent monthly"}
            )  # fmt: skip
        elif kind == 1:
            rows.append(
                {"id": f"r{index}", "input": "refund time?", "segment": "refunds",
                 "relevant_ids": ["refund-1"], "expected": "refunds take 5 days"}
            )  # fmt: skip
        else:
            rows.append({"input": {"question": "hello"}, "segment": "small_talk"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _llmspans(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmspans.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("function", ["handle", "handle_async"])
def test_a_labelled_set_runs_offline_and_matches_analyze(tmp_path: Path, function: str) -> None:
    dataset = _dataset(tmp_path / "set.jsonl")
    traces = tmp_path / "traces.jsonl"
    done = _llmspans(
        "eval", str(dataset), "--pipeline", f"tests.offline.fixture_pipeline:{function}",
        "--traces", str(traces), "--json", "--concurrency", "8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "240 runs, 0 raised, 0 lines skipped" in done.stderr
    report = _json(done)
    name = "faq_answer" if function == "handle" else "faq_answer_async"
    pipeline = report["pipelines"][name]
    assert pipeline["runs"] == 240
    # refunds: retrieval missed the labelled document in every one of its 80 runs
    retrieval = pipeline["stages"]["retrieval"]
    assert retrieval["failures_by_reason"] == {"missed_relevant": 80}
    # recall over the labelled runs: billing 1.0 (80 runs), refunds 0.0 (80 runs)
    assert pipeline["context_recall"]["runs"] == 160
    assert pipeline["context_recall"]["mean"] == pytest.approx(0.5)
    # the same traces, analyzed on their own, give the same numbers
    again = _llmspans("analyze", str(traces), "--json")
    assert again.returncode == 0, again.stderr
    assert _json(again)["pipelines"] == report["pipelines"]
    # every root says it is offline, with the line's segment and correctness
    roots = []
    for line in traces.read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    attributes = {a["key"]: a["value"] for a in span.get("attributes", [])}
                    if attributes.get("llmspans.stage", {}).get("stringValue") == "pipeline":
                        roots.append(attributes)
    assert len(roots) == 240
    assert {r["llmspans.run.source"]["stringValue"] for r in roots} == {"offline"}
    by_segment: dict[str, set[bool]] = {}
    for root in roots:
        correct = root.get("llmspans.task.correct", {}).get("boolValue")
        by_segment.setdefault(root["llmspans.segment"]["stringValue"], set()).add(correct)
    assert by_segment == {"billing": {True}, "refunds": {False}, "small_talk": {None}}


def test_check_function_and_bad_lines(tmp_path: Path) -> None:
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(
        '{"input": "where is my invoice?", "expected": "INVOICES ARE SENT MONTHLY"}\n'
        '{"a": 1}\n'
        "not json\n"
        '{"input": "x", "relevant_ids": "bill-1"}\n' + '{"input": "' + "x" * 2000 + '"}\n',
        encoding="utf-8",
    )
    traces = tmp_path / "traces.jsonl"
    done = _llmspans(
        "eval", str(dataset), "--pipeline", "tests.offline.fixture_pipeline:handle",
        "--check", "tests.offline.fixture_pipeline:loose_check", "--traces", str(traces),
        "--json", "--max-line-bytes", "1000",
    )  # fmt: skip
    assert done.returncode == 1  # lines were skipped
    assert "skipped line 2: no \"input\"" in done.stderr
    assert "skipped line 3: not JSON" in done.stderr
    assert "skipped line 4: \"relevant_ids\" is not a list of strings" in done.stderr
    assert "skipped line 5: longer than 1000 bytes" in done.stderr
    assert '"llmspans.task.correct", "value": {"boolValue": true}' in traces.read_text()


def test_a_raising_pipeline_is_counted_and_bad_names_exit_2(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "set.jsonl", lines=3)
    done = _llmspans(
        "eval", str(dataset), "--pipeline", "tests.offline.fixture_pipeline:broken", "--json"
    )
    assert done.returncode == 1
    assert "3 runs, 3 raised" in done.stderr
    assert "RuntimeError: boom" in done.stderr
    missing = _llmspans("eval", str(dataset), "--pipeline", "tests.offline.nowhere:handle")
    assert missing.returncode == 2 and "--pipeline" in missing.stderr


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--concurrency", "0", "expected a positive integer, got 0"),
        ("--concurrency", "100000", "expected at most 256, got 100000"),
        ("--max-line-bytes", "-2", "expected a positive integer, got -2"),
        ("--max-line-bytes", "lots", "expected a positive integer, got 'lots'"),
    ],
)
def test_bad_bounds_exit_2_with_one_line(
    tmp_path: Path, option: str, value: str, says: str
) -> None:
    # a negative line bound would read whole lines unbounded, a huge concurrency
    # would start that many threads: refused before anything runs
    dataset = _dataset(tmp_path / "set.jsonl", lines=3)
    done = _llmspans(
        "eval", str(dataset), "--pipeline", "tests.offline.fixture_pipeline:handle", option, value
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_huge_line_is_read_past_in_bounded_pieces() -> None:
    import io

    from llmspans._tracefiles import bounded_lines
    from llmspans.offline import read_dataset

    data = b'{"input": "a"}\n' + b"x" * 5_000_000 + b'\n{"input": "b"}\n'
    pieces = list(bounded_lines(io.BytesIO(data), 1000))
    assert len(pieces) == 3
    assert max(len(piece.encode()) for piece in pieces) <= 1001
    skipped: list[tuple[int, str]] = []
    lines = list(read_dataset(pieces, 1000, skipped))
    assert [line.input for line in lines] == ["a", "b"]
    assert [number for number, _ in skipped] == [2]
