"""The scenario of docs/evaluation.md: runs that look successful, judged wrong.

Runs whose retrieval silently missed the relevant document and whose answers are
wrong, with no label from the app, are counted exactly in the judged failures once
sampled and judged by a code evaluator; judged context precision, recall and
citation support equal the hand-computed values; ``llmspans analyze --evaluator``
and the shared store give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from llmspans import analyze
from llmspans.core import exposition
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.judging import accumulate_judgment, sampled_runs
from llmspans.core.model import Thresholds
from llmspans.core.store import MetricStore
from llmspans.embedded import record_from_readable_span
from tests.core.test_embedded import write_otlp_json_lines

from . import judges, scenario

Tracing = tuple[TracerProvider, InMemorySpanExporter]
EVALUATOR = "tests.evaluation.judges:judge"


def _recorded(tracing: Tracing, path: Path) -> None:
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    scenario.record_runs(tracer)
    scenario.record_runs(tracer, scenario.RUNS[:2], sampled=False)
    write_otlp_json_lines(exporter.get_finished_spans(), path, per_line=4)


def _analyze(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    assert analyze.run(parser.parse_args([str(path), "--json", *extra])) == 0
    output: dict[str, Any] = json.loads(capsys.readouterr().out)
    return output


def test_analyze_with_an_evaluator_counts_the_silent_failures(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "traces.jsonl"
    _recorded(tracing, path)
    plain = _analyze(path, capsys)
    # Without a judge every run looks like a success and nothing is judged.
    assert plain["pipelines"]["support"]["outcomes"]["success"] == 12
    assert "evaluation" not in plain

    report = _analyze(path, capsys, "--evaluator", EVALUATOR)
    assert report["pipelines"] == plain["pipelines"]
    evaluation = report["evaluation"]
    assert evaluation["sampled_runs"] == 10
    judged = evaluation["pipelines"]["support"]
    assert judged["judged_runs"] == 10
    assert judged["judged_failures"] == {
        "retrieval/missed_relevant": scenario.MISSED_RELEVANT,
        "generation/incorrect_answer": scenario.INCORRECT_ANSWER,
    }
    assert judged["context_precision"] == pytest.approx(scenario.JUDGED_PRECISION)
    assert judged["context_recall"] == pytest.approx(scenario.JUDGED_RECALL)
    assert judged["citation_support"] == pytest.approx(scenario.CITATION_SUPPORT)
    verdicts = evaluation["evaluators"][EVALUATOR]["verdicts"]
    assert verdicts == {"incorrect": 7, "correct": 3}
    assert evaluation["evaluators"][EVALUATOR]["cost_usd"] == pytest.approx(0.01)
    assert evaluation["dropped"] == {}


def test_text_report_shows_the_judged_figures(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "traces.jsonl"
    _recorded(tracing, path)
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    assert analyze.run(parser.parse_args([str(path), "--evaluator", EVALUATOR])) == 0
    text = capsys.readouterr().out
    assert "evaluation: 10 sampled runs" in text
    assert "judged failure retrieval/missed_relevant: 4" in text
    assert "judged context precision 0.450, recall 0.600, citation support 0.650" in text


def test_an_unknown_evaluator_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    assert analyze.run(parser.parse_args([str(path), "--evaluator", "nope.nothing:judge"])) == 2
    assert "cannot import 'nope.nothing'" in capsys.readouterr().err


def test_the_store_gives_the_same_numbers(tracing: Tracing) -> None:
    """The collector's and the embedded mode's sink: the same core function, the same
    figures, rendered as Prometheus text."""
    provider, exporter = tracing
    scenario.record_runs(provider.get_tracer("t"))
    records = [record_from_readable_span(span) for span in exporter.get_finished_spans()]
    store = MetricStore()
    thresholds = Thresholds()
    for trace_id in dict.fromkeys(record.trace_id for record in records):
        result = evaluate_trace([r for r in records if r.trace_id == trace_id], thresholds)
        store.record(result, trace_id)
        for run, verdict, evaluated in sampled_runs(result):
            accumulate_judgment(
                run,
                verdict,
                evaluated,
                judges.judge(evaluated),
                evaluator="code",
                thresholds=thresholds,
                sink=store,
                labeler=store.labeler,
            )
    assert (
        store.counter(A.METRIC_JUDGED_FAILURES, stage="retrieval", reason="missed_relevant")
        == scenario.MISSED_RELEVANT
    )
    assert store.counter(A.METRIC_JUDGED_FAILURES) == 7
    # The app's own view is unchanged: every run a success, no stage failure.
    assert store.counter(A.METRIC_STAGE_FAILURES) == 0
    precision = store.aggregates.histogram(A.METRIC_CONTEXT_PRECISION, basis="judge")
    assert precision.count == 10
    assert math.isclose(precision.sum / precision.count, scenario.JUDGED_PRECISION)
    recall = store.aggregates.histogram(A.METRIC_CONTEXT_RECALL, basis="judge")
    assert math.isclose(recall.sum / recall.count, scenario.JUDGED_RECALL)
    support = store.aggregates.histogram(A.METRIC_CITATION_SUPPORT)
    assert math.isclose(support.sum / support.count, scenario.CITATION_SUPPORT)
    assert store.counter(A.METRIC_CALIBRATION_RUNS, basis="judge", correct="false") == 7
    assert store.counter(A.METRIC_CALIBRATION_RUNS, basis="outcome") == 10
    text = exposition.render(store)
    assert (
        'llmspans_judged_failures_total{pipeline="support",segment="none",source="production",'
        'stage="retrieval",reason="missed_relevant"} 4' in text
    )
    assert (
        'llmspans_evaluations_total{pipeline="support",evaluator="code",verdict="incorrect"} 7'
        in text
    )


def test_the_docs_evaluation_table_is_the_catalogue() -> None:
    from llmspans.core.catalogue import EVALUATION, markdown_table

    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text("utf-8")
    start = text.index("## Evaluation metrics")
    table = text.index("| Prometheus name |", start)
    assert text[table:] == markdown_table(EVALUATION), (
        "paste markdown_table(EVALUATION) from llmspans.core.catalogue under 'Evaluation metrics'"
    )
