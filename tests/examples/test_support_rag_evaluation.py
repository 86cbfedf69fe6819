"""The support bot under evaluation: its segments, the offline set, the live questions
and the deterministic judge the demo uses (llmspans.examples.support_rag.evaluation)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _attributes as A
from llmspans._demo.examples import submodule
from llmspans.analyze import analyze_lines
from llmspans.core.model import Thresholds
from llmspans.evaluation import Document, Run
from llmspans.offline import otlp_json_lines

knowledge = submodule("support_rag.knowledge")
pipeline = submodule("support_rag.pipeline")
evaluation = submodule("support_rag.evaluation")
segments = submodule("support_rag.segments")

ROOT = Path(__file__).resolve().parents[2]


def _offline_set() -> list[dict[str, Any]]:
    lines = evaluation.OFFLINE_SET.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_question_has_a_known_segment() -> None:
    questions = knowledge.load_questions()
    assert {q.segment for q in questions} == set(segments.SEGMENTS)
    live = knowledge.load_live_questions()
    assert len(live) >= 10
    assert {q.segment for q in live} == {"billing"}
    kb = knowledge.KnowledgeBase.load()
    for q in live:
        assert q.relevant_ids and set(q.relevant_ids) <= set(kb.documents), q.id


def test_the_offline_set_is_labelled_from_the_questions_and_lacks_billing() -> None:
    rows = _offline_set()
    assert len(rows) >= 200
    labelled = {q.question: q for q in knowledge.load_questions()}
    for row in rows:
        question = labelled[str(row["input"])]
        assert row["segment"] == question.segment
        assert row["relevant_ids"] == row["expected"] == list(question.relevant_ids)
    counts = Counter(str(row["segment"]) for row in rows)
    assert "billing" not in counts
    assert set(counts) == set(segments.SEGMENTS) - {"billing"}
    assert counts["product"] >= 100  # enough runs for a segment to be tested


def test_llmspans_eval_runs_the_offline_set_through_the_bot(tmp_path: Path) -> None:
    traces = tmp_path / "offline.jsonl"
    done = subprocess.run(
        [
            sys.executable, "-m", "llmspans.cli", "eval", str(evaluation.OFFLINE_SET),
            "--pipeline", "llmspans.examples.support_rag.evaluation:answer",
            "--check", "llmspans.examples.support_rag.evaluation:cites_expected",
            "--traces", str(traces), "--json",
        ],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    support = report["pipelines"]["support_rag"]
    assert sum(support["outcomes"].values()) == len(_offline_set())
    # Every run completes (a reply is posted); correctness comes from --check.
    assert support["outcomes"]["success"] == len(_offline_set())
    roots = [
        span
        for line in traces.read_text("utf-8").splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
        if not span.get("parentSpanId")
    ]
    attributes = [{a["key"]: a["value"] for a in span["attributes"]} for span in roots]
    assert {a[A.RUN_SOURCE]["stringValue"] for a in attributes} == {A.SOURCE_OFFLINE}
    assert Counter(a[A.SEGMENT]["stringValue"] for a in attributes) == Counter(
        str(row["segment"]) for row in _offline_set()
    )
    # --check says what the bot's own parts say: the answer cites an expected article.
    wrong = sum(
        _expected_judgment(row["input"], frozenset(row["expected"])) is not None
        for row in _offline_set()
    )
    assert 0 < sum(not a[A.TASK_CORRECT]["boolValue"] for a in attributes) == wrong


def _expected_judgment(question: str, relevant: frozenset[str]) -> str | None:
    """What the bot's own parts do with ``question`` (no tracing), as a judged root cause."""
    kb = knowledge.KnowledgeBase.load()
    docs = kb.search(question, pipeline.TOP_K)
    if not {d.id for d in docs} & relevant:
        return "retrieval/missed_relevant"
    bot = pipeline.SupportRag(knowledge=kb)
    selected = bot.select(docs, pipeline.TOKEN_BUDGET)
    if not {d.id for d in selected} & relevant:
        return "context_selection/dropped_relevant"
    answer = bot.answerer.answer(question, selected)
    return None if set(answer.citations) & relevant else "generation/incorrect_answer"


def test_the_judge_finds_what_live_billing_questions_silently_get_wrong() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    configuration = llmspans.configure(
        tracer_provider=provider,
        set_global=False,
        propagate_context=False,
        evaluation_sample_rates={"billing": 1.0},
    )
    try:
        bot = pipeline.SupportRag()
        live = knowledge.load_live_questions()
        replies = [bot.serve(q, f"T-{q.id}") for q in live]
    finally:
        configuration.shutdown()
        provider.shutdown()
    # To the app every reply is a success: no labels, a cited answer, a posted reply.
    assert all(r.reply_id is not None and r.answer and not r.answer.refused for r in replies)
    lines = list(otlp_json_lines(exporter.get_finished_spans()))
    report = analyze_lines(lines, Thresholds(), [("judge", evaluation.judge)])
    assert report.pipelines["support_rag"].outcomes == {"success": len(live)}
    expected = Counter(
        reason
        for q in live
        if (reason := _expected_judgment(q.question, frozenset(q.relevant_ids)))
    )
    assert expected["retrieval/missed_relevant"] >= 3  # the story the demo tells
    judged = report.evaluation["pipelines"]["support_rag"]
    assert judged["judged_runs"] == len(live)
    assert judged["judged_failures"] == dict(expected)
    right = len(live) - sum(expected.values())
    assert report.evaluation["evaluators"]["judge"]["verdicts"] == {
        "correct": right,
        "incorrect": sum(expected.values()),
    }
    # Judged recall: the share of runs whose retrieval found a relevant article.
    assert judged["context_recall"] == pytest.approx(
        1 - expected["retrieval/missed_relevant"] / len(live), abs=1e-6
    )
    # The extractive answerer quotes what it cites: every citation is supported.
    assert judged["citation_support"] == 1.0


def test_the_judge_leaves_what_it_has_no_truth_for_unjudged() -> None:
    unknown = evaluation.judge(Run(pipeline="support_rag", input="What is the meaning of life?"))
    assert (unknown.relevant_ids, unknown.correct) == (None, None)
    other = evaluation.judge(Run(pipeline="sql_analyst", input="How do I turn on dark mode?"))
    assert other.correct is None


def test_the_judge_reads_support_from_the_cited_text() -> None:
    question = "How do I turn on dark mode?"
    text = "Dark mode follows the system setting. Pick a theme under Settings."
    run = Run(
        pipeline="support_rag",
        input=f"  {question.upper()} ",
        documents=(Document("kb-061", text), Document("kb-019", "Sync is stuck.")),
        answer="Dark mode follows the system setting.",
        citations={"kb-061": "Dark mode follows the system setting.", "kb-019": "Themes."},
    )
    judgment = evaluation.judge(run)
    assert judgment.relevant_ids == ["kb-061"]
    assert judgment.supported_citations == ["kb-061"]
    assert judgment.unsupported_citations == ["kb-019"]
    assert judgment.correct is True


def test_cites_expected_is_the_offline_check() -> None:
    bot = pipeline.SupportRag()
    reply = bot.handle("How do I turn on dark mode?", ticket_id="T-1")
    assert evaluation.cites_expected(reply, ["kb-061"]) is True
    assert evaluation.cites_expected(reply, ["kb-001"]) is False
    assert evaluation.cites_expected(object(), ["kb-061"]) is False
