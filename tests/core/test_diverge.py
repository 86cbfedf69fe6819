"""``llmspans diverge``: planted differences between offline and production runs."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from llmspans import diverge
from llmspans.cli import main

from .test_embedded import write_otlp_json_lines

Tracing = tuple[TracerProvider, InMemorySpanExporter]


def _runs(tracing: Tracing, path: Path, plan: list[tuple[str, str, int, float]]) -> None:
    """Runs of pipeline "rag": (source, segment, runs, share of runs with recall 1.0;
    the others retrieve one of their two relevant documents, recall 0.5)."""
    provider, exporter = tracing
    exporter.clear()
    tracer = provider.get_tracer("t")
    for source, segment, count, full in plan:
        for index in range(count):
            found = ["r1", "r2"] if index < round(count * full) else ["r1", "x"]
            root = {
                A.STAGE: A.STAGE_PIPELINE,
                A.PIPELINE: "rag",
                A.SEGMENT: segment,
                A.RUN_SOURCE: source,
                A.TASK_COMPLETED: True,
            }
            stage = {
                A.STAGE: A.STAGE_RETRIEVAL,
                A.RETRIEVAL_DOCUMENT_IDS: found,
                A.RETRIEVAL_RELEVANT_IDS: ["r1", "r2"],
            }
            # Fixed times: the durations of both sides are equal whatever the machine's
            # load, so only the planted differences can diverge.
            start = 1_700_000_000_000_000_000 + index * 1_000_000_000
            pipeline_span = tracer.start_span(
                "invoke_workflow rag", attributes=root, start_time=start
            )
            retrieval = tracer.start_span(
                "retrieval faq",
                context=trace.set_span_in_context(pipeline_span),
                attributes=stage,
                start_time=start,
            )
            retrieval.end(end_time=start + 10_000_000)
            pipeline_span.end(end_time=start + 20_000_000)
    write_otlp_json_lines(tuple(exporter.get_finished_spans()), path, per_line=50)


@pytest.fixture
def planted(tracing: Tracing, tmp_path: Path) -> tuple[Path, Path]:
    offline, production = tmp_path / "offline.jsonl", tmp_path / "production.jsonl"
    _runs(
        tracing,
        offline,
        [
            ("offline", "billing", 300, 0.9),  # recall 0.95
            ("offline", "small_talk", 300, 0.5),  # recall 0.75
            ("offline", "tiny", 5, 1.0),  # recall 1.0
        ],
    )
    _runs(
        tracing,
        production,
        [
            ("production", "billing", 300, 0.0),  # recall 0.50
            ("production", "small_talk", 300, 0.5),  # recall 0.75
            ("production", "tiny", 5, 0.0),  # recall 0.50
            ("production", "refunds", 200, 0.5),  # no offline runs at all
        ],
    )
    return offline, production


def _json_rows(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any]]:
    status = main(["diverge", *argv, "--format", "json"])
    return status, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _row(rows: list[Any], segment: str, metric: str) -> Any:
    return next(r for r in rows if r["segment"] == segment and r["metric"] == metric)


def test_planted_differences(
    planted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    offline, production = planted
    status, rows = _json_rows(capsys, "--offline", str(offline), "--production", str(production))
    assert status == 1
    for row in rows:
        assert {
            "pipeline",
            "segment",
            "metric",
            "offline",
            "production",
            "difference",
            "significant",
        } <= set(row)

    billing = _row(rows, "billing", "context_recall")
    assert billing["offline"] == pytest.approx(0.95)
    assert billing["production"] == pytest.approx(0.50)
    assert billing["difference"] == pytest.approx(-0.45)
    assert billing["significant"] is True
    low, high = billing["interval"]
    assert low < -0.45 < high < 0

    equal = _row(rows, "small_talk", "context_recall")
    assert equal["difference"] == pytest.approx(0.0)
    assert equal["significant"] is False
    # its share of runs does differ (production also serves "refunds"): coverage only
    assert not any(
        r["significant"] for r in rows if r["segment"] == "small_talk" and r["metric"] != "coverage"
    )

    tiny = _row(rows, "tiny", "context_recall")
    assert tiny["difference"] == pytest.approx(-0.5)
    assert tiny["significant"] is False and tiny["verdict"] == "too few runs"
    assert not any(
        r["significant"] for r in rows if r["segment"] == "tiny" and r["metric"] != "coverage"
    )

    coverage = [r for r in rows if r["metric"] == "coverage"]
    assert coverage[0]["segment"] == "refunds"
    assert coverage[0]["uncovered"] is True and coverage[0]["significant"] is True
    assert coverage[0]["offline"] == 0.0
    assert coverage[0]["production"] == pytest.approx(200 / 805)
    assert [r["segment"] for r in coverage if r["uncovered"]] == ["refunds"]
    assert {r["segment"] for r in coverage} == {"refunds", "billing", "small_talk", "tiny"}
    # rows about the production-only segment exist only as coverage
    assert all(r["metric"] == "coverage" for r in rows if r["segment"] == "refunds")


def test_table_output(planted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    offline, production = planted
    assert main(["diverge", "--offline", str(offline), "--production", str(production)]) == 1
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[4:8] == ["offline", "production", "difference", "interval"]
    assert "verdict" in header
    billing = next(line for line in out.splitlines() if "billing" in line and "recall" in line)
    assert billing.rstrip().endswith("diverges")
    coverage = out.split("segment coverage")[1].splitlines()
    assert "refunds" in coverage[2] and coverage[2].rstrip().endswith("uncovered")


def test_nothing_significant_exits_zero(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline, production = tmp_path / "o.jsonl", tmp_path / "p.jsonl"
    _runs(tracing, offline, [("offline", "billing", 60, 0.5)])
    _runs(tracing, production, [("production", "billing", 60, 0.5)])
    status, rows = _json_rows(capsys, "--offline", str(offline), "--production", str(production))
    assert status == 0
    assert rows and not any(r["significant"] for r in rows)


def test_shadow_against_production(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shadow, production = tmp_path / "s.jsonl", tmp_path / "p.jsonl"
    _runs(tracing, shadow, [("shadow", "billing", 200, 1.0)])
    _runs(tracing, production, [("production", "billing", 200, 0.0)])
    status, rows = _json_rows(capsys, "--shadow", str(shadow), "--production", str(production))
    assert status == 1
    recall = _row(rows, "billing", "context_recall")
    assert recall["comparison"] == "shadow" and recall["significant"] is True


def test_gzip_inputs_give_the_rows_of_the_plain_files(
    planted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline, production = planted
    plain = _json_rows(capsys, "--offline", str(offline), "--production", str(production))
    packed = []
    for path in planted:
        target = tmp_path / f"{path.name}.gz"
        target.write_bytes(gzip.compress(path.read_bytes()))
        packed.append(str(target))
    assert _json_rows(capsys, "--offline", packed[0], "--production", packed[1]) == plain
    assert plain[0] == 1 and plain[1]

    # Cut short: read up to the break, with a warning that names the file.
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(production.read_bytes(), compresslevel=0)[:-5000])
    assert main(["diverge", "--offline", packed[0], "--production", str(cut)]) == 1
    captured = capsys.readouterr()
    assert "billing" in captured.out
    err = captured.err
    assert f"warning: {cut}: the compressed data ends early" in err
    assert "read up to line" in err

    # Not gzip at all: exit status 2, said so.
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_bytes(production.read_bytes())
    assert main(["diverge", "--offline", packed[0], "--production", str(fake)]) == 2
    assert "not a readable gzip file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--production", "p.jsonl"],  # nothing to compare with
        ["--offline", "missing.jsonl", "--production", "missing.jsonl"],
        ["--offline", "o", "--production", "p", "--confidence", "1.5"],
        ["--offline", "o", "--production", "p", "--min-runs", "0"],
        ["--prometheus", "http://127.0.0.1:9", "--window", "1h; drop"],
    ],
)
def test_exit_status_two_on_bad_arguments(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(["diverge", *argv])
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    assert status == 2


def test_unreachable_prometheus_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diverge", "--prometheus", "http://127.0.0.1:9"]) == 2
    assert "cannot query" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b'{"status": "success", "data": {"result": "' + b"x" * (9 << 20) + b'"}}', "more than"),
        (b"[" * 200_000 + b"]" * 200_000, "not a Prometheus query answer"),
        (b'{"status": "success", "data": {"result": [{"value": 5, "metric": {}}]}}', "not a"),
        (b'{"status": "success", "data": {"result": "abc"}}', "not a Prometheus"),
        (b"not json at all", "cannot query"),
    ],
    ids=["9-mib", "deep-nesting", "value-not-a-pair", "result-not-a-list", "not-json"],
)
def test_a_hostile_prometheus_answer_exits_two_with_one_line(
    answer: bytes, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server on the --prometheus URL answering junk: read at most 8 MiB, refused
    with exit 2 and one line, never a traceback."""
    import http.server
    import threading
    import time

    class Junk(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Junk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        start = time.perf_counter()
        status = main(["diverge", "--prometheus", f"http://127.0.0.1:{server.server_port}"])
        seconds = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert status == 2
    assert says in err
    assert "Traceback" not in err
    assert len(err) < 2000
    assert seconds < 10


def test_junk_segments_are_bounded(tracing: Tracing, tmp_path: Path) -> None:
    """Thousands of one-run junk segments: at most --max-segments per pipeline, the
    rest ``other``; bootstrap samples stay at their reservoir size."""
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    rng = random.Random(1)
    for index in range(3000):
        root = {
            A.STAGE: A.STAGE_PIPELINE,
            A.PIPELINE: "rag",
            A.SEGMENT: f"junk-{rng.random()}-{index}",
            A.RUN_SOURCE: "production",
        }
        stage = {A.STAGE: A.STAGE_RETRIEVAL, A.RETRIEVAL_DOCUMENT_IDS: ["d"]}
        with (
            tracer.start_as_current_span("invoke_workflow rag", attributes=root),
            tracer.start_as_current_span("retrieval faq", attributes=stage),
        ):
            pass
    path = tmp_path / "junk.jsonl"
    write_otlp_json_lines(tuple(exporter.get_finished_spans()), path, per_line=200)
    with path.open() as lines:
        sides = diverge.read_sides([("junk", lines)], max_segments=10)
    segments = sides["production"]
    assert len(segments) == 11  # ten junk segments and other
    other = segments[("rag", "other")]
    assert other.runs == 2990
    assert len(other.sample) == min(diverge.RESERVOIR, 2990)


def test_intervals_are_textbook() -> None:
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80, method 10.
    low, high = diverge.newcombe(48, 80, 56, 70, 0.95)
    assert low == pytest.approx(0.0524, abs=5e-4)
    assert high == pytest.approx(0.3339, abs=5e-4)
    # Student t quantiles
    assert diverge.t_quantile(0.975, 10) == pytest.approx(2.228, abs=2e-3)
    assert diverge.t_quantile(0.975, 30) == pytest.approx(2.042, abs=1e-3)
