"""The evaluation runner and the core's bounds: queue, concurrency, budget, timeouts,
adversarial judgments and runs."""

from __future__ import annotations

import json
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from llmspans import _attributes as A
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.judging import (
    MAX_RUN_DOCUMENTS,
    MAX_TEXT_CHARS,
    accumulate_judgment,
    clean_judgment,
    sampled_runs,
)
from llmspans.core.metrics import Aggregates
from llmspans.core.model import Thresholds
from llmspans.core.records import MAX_CONTENT_CHARS
from llmspans.embedded import record_from_readable_span
from llmspans.evaluation import (
    Document,
    EvaluationRunner,
    Judgment,
    Run,
    load_evaluator,
    should_sample,
)

from . import judges

Tracing = tuple[TracerProvider, InMemorySpanExporter]


RUN = Run(
    pipeline="p",
    trace_id="00" * 16,
    input="q",
    documents=(Document("a", "refund in 5 days", 0.9), Document("b", "hours", 0.1)),
    answer="5 days",
    citations={"a": "refund in 5 days"},
)


def _run_all(runner: EvaluationRunner[int], count: int = 1) -> None:
    for index in range(count):
        runner.submit(index, RUN)
    assert runner.drain(10.0)


def test_sampling_agrees_with_trace_id_ratio_based() -> None:
    for rate in (0.0, 0.01, 0.25, 0.5, 1.0):
        sampler = TraceIdRatioBased(rate)
        for value in range(0, 1 << 64, (1 << 64) // 997):
            trace_id = (value * 2654435761) % (1 << 128)
            decided = sampler.should_sample(None, trace_id, "x").decision
            assert should_sample(trace_id, rate) == (decided is Decision.RECORD_AND_SAMPLE)
    assert should_sample(b"\x00" * 16, 0.0, "vip", {"vip": 1.0})
    assert not should_sample(b"\xff" * 16, 1.0, "bulk", {"bulk": 0.0})


def test_loading_evaluators_says_what_is_wrong() -> None:
    assert load_evaluator("tests.evaluation.judges:judge").__name__ == "judge"
    for spec, message in [
        ("no_colon", "expected 'package.module:function'"),
        ("nope.missing:judge", "cannot import"),
        ("tests.evaluation.judges:absent", "has no 'absent'"),
        ("tests.evaluation.judges:NOT_CALLABLE", "is not callable"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_evaluator(spec)


def test_sync_and_async_evaluators_are_called() -> None:
    runner: EvaluationRunner[int] = EvaluationRunner(
        [("sync", judges.judge), ("async", judges.async_judge)]
    )
    _run_all(runner, 3)
    outcomes, dropped = runner.take()
    runner.close()
    assert sorted(o.evaluator for o in outcomes) == ["async"] * 3 + ["sync"] * 3
    assert all(o.judgment is not None and o.judgment.correct for o in outcomes)
    assert dropped == {}


def test_a_hanging_evaluator_times_out_and_errors_are_counted() -> None:
    runner: EvaluationRunner[int] = EvaluationRunner(
        [("hangs", judges.hangs), ("broken", judges.broken), ("odd", judges.not_a_judgment)],
        timeout_s=0.2,
        concurrency=2,
    )
    started = time.monotonic()
    _run_all(runner)
    assert time.monotonic() - started < 3.0
    outcomes, _ = runner.take()
    runner.close(timeout_s=0.1)
    assert {o.evaluator: o.status for o in outcomes} == {
        "hangs": "timeout",
        "broken": "error",
        "odd": "error",
    }


def test_a_full_queue_drops_and_never_blocks() -> None:
    runner: EvaluationRunner[int] = EvaluationRunner(
        [("hangs", judges.hangs)], queue_size=2, concurrency=1, timeout_s=0.3
    )
    started = time.monotonic()
    accepted = [runner.submit(index, RUN) for index in range(50)]
    assert time.monotonic() - started < 0.5
    assert accepted.count(False) >= 47
    runner.close(timeout_s=0.1)
    _, dropped = runner.take()
    assert dropped["queue_full"] == accepted.count(False)


def test_budget_in_calls_and_dollars() -> None:
    now = [0.0]
    runner: EvaluationRunner[int] = EvaluationRunner(
        [("judge", judges.judge)], calls_per_minute=3, clock=lambda: now[0]
    )
    _run_all(runner, 5)
    outcomes, dropped = runner.take()
    assert len(outcomes) == 3
    assert dropped == {"budget_calls": 2}
    now[0] = 61.0
    _run_all(runner, 1)
    assert len(runner.take()[0]) == 1
    runner.close()

    dollars: EvaluationRunner[int] = EvaluationRunner(
        [("judge", judges.judge)], usd_per_hour=0.0025, concurrency=1, clock=lambda: now[0]
    )
    _run_all(dollars, 5)
    outcomes, dropped = dollars.take()
    dollars.close()
    assert len(outcomes) == 3  # 0.001 each: the third call starts below the budget
    assert dropped == {"budget_usd": 2}


def test_a_judge_naming_ids_never_retrieved_is_cut_to_the_run() -> None:
    judgment = judges.liar(RUN)
    clean = clean_judgment(judgment, RUN)
    assert clean.relevant_ids == ("a",)
    assert clean.score is None
    weird = clean_judgment(
        Judgment(
            supported_citations=["a", "zzz"],
            correct="yes",
            cost_usd=float("nan"),  # type: ignore[arg-type]
        ),
        RUN,
    )
    assert weird.supported_citations == ("a",)
    assert weird.correct is None
    assert weird.cost_usd == 0.0


def _sampled_trace(tracing: Tracing, documents: int, content: str) -> list[object]:
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(
        "invoke_workflow big",
        attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: "big", A.EVALUATION_SAMPLED: True},
    ):
        with tracer.start_as_current_span(
            "retrieval",
            attributes={
                A.STAGE: A.STAGE_RETRIEVAL,
                A.RETRIEVAL_DOCUMENT_IDS: [f"d{i}" for i in range(documents)],
                A.RETRIEVAL_DOCUMENTS_CONTENT: content,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat",
            attributes={
                A.STAGE: A.STAGE_GENERATION,
                A.GEN_AI_OUTPUT_MESSAGES: "x" * (MAX_TEXT_CHARS * 3),
                A.GENERATION_CLAIMS: "[" * 100_000,
            },
        ):
            pass
    return [record_from_readable_span(span) for span in exporter.get_finished_spans()]


def test_a_run_with_100k_documents_is_bounded(tracing: Tracing) -> None:
    texts = json.dumps({f"d{i}": f"text {i}" for i in range(100_000)})
    records = _sampled_trace(tracing, 100_000, texts)
    assert len(records[0].documents_content or "") <= MAX_CONTENT_CHARS  # type: ignore[attr-defined]
    ((run, verdict, evaluated),) = sampled_runs(evaluate_trace(records, Thresholds()))  # type: ignore[arg-type]
    assert len(evaluated.documents) == MAX_RUN_DOCUMENTS
    assert evaluated.documents[0].id == "d0"
    assert len(evaluated.answer or "") == MAX_TEXT_CHARS
    assert evaluated.citations == {}  # the claims were not JSON: none, no crash
    sink = Aggregates()
    accumulate_judgment(
        run,
        verdict,
        evaluated,
        Judgment(relevant_ids=[f"d{i}" for i in range(0, 5000, 7)]),
        evaluator="e",
        thresholds=Thresholds(),
        sink=sink,
    )
    assert sink.histogram(A.METRIC_CONTEXT_PRECISION, basis="judge").count == 1


def test_content_that_is_not_json_is_kept_as_text(tracing: Tracing) -> None:
    records = _sampled_trace(tracing, 2, "not json {")
    ((_, _, evaluated),) = sampled_runs(evaluate_trace(records, Thresholds()))  # type: ignore[arg-type]
    assert [d.text for d in evaluated.documents] == [None, None]


def test_agreement_with_the_apps_labels() -> None:
    from tests.core.builders import pipeline_root, record

    root = pipeline_root("p", task_correct=True, evaluation_sampled=True)
    trace = [
        root,
        record(A.STAGE_RETRIEVAL, parent=root, document_ids=("a", "b", "c"), relevant_ids=("a",)),
        record(A.STAGE_GENERATION, parent=root, confidence=0.8),
    ]
    ((run, verdict, evaluated),) = sampled_runs(evaluate_trace(trace, Thresholds()))
    sink = Aggregates()
    accumulate_judgment(
        run,
        verdict,
        evaluated,
        Judgment(relevant_ids=["a", "b"], correct=False),
        evaluator="e",
        thresholds=Thresholds(),
        sink=sink,
    )
    assert sink.counter(A.METRIC_JUDGE_AGREEMENT, aspect="relevance", agree="true") == 2
    assert sink.counter(A.METRIC_JUDGE_AGREEMENT, aspect="relevance", agree="false") == 1
    assert sink.counter(A.METRIC_JUDGE_AGREEMENT, aspect="correctness", agree="false") == 1


def test_a_judgment_of_the_wrong_types_is_not_judged() -> None:
    odd = Judgment(
        relevant_ids=5,  # type: ignore[arg-type]
        supported_citations="a",  # type: ignore[arg-type]
        unsupported_citations=[["a"], None, "a"],  # type: ignore[list-item]
        explanation="x" * 10_000_000,
    )
    clean = clean_judgment(odd, RUN)
    assert clean.relevant_ids is None
    assert clean.supported_citations is None
    assert clean.unsupported_citations == ("a",)


def test_the_collector_reads_its_evaluators_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmspans.collector.config import load_settings
    from llmspans.collector.evaluation import evaluators_of

    monkeypatch.setenv(
        "LLMSPANS_COLLECTOR__EVALUATION__EVALUATORS", '["tests.evaluation.judges:judge"]'
    )
    settings = load_settings()
    assert settings.evaluation.evaluators == ["tests.evaluation.judges:judge"]
    assert settings.evaluation.forward_content is False
    ((name, evaluator),) = evaluators_of(settings.evaluation)
    assert name == "tests.evaluation.judges:judge" and callable(evaluator)


def test_an_evaluator_hung_for_good_never_holds_up_the_process_exit() -> None:
    import subprocess
    import sys

    code = (
        "import time\n"
        "from llmspans.evaluation import EvaluationRunner, Run\n"
        "runner = EvaluationRunner([('h', lambda run: time.sleep(3600))], timeout_s=0.2)\n"
        "runner.submit(0, Run(pipeline='p'))\n"
        "assert runner.drain(5)\n"
        "print(runner.take()[0][0].status)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "timeout"
    assert time.monotonic() - started < 30
