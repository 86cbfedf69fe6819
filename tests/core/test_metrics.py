"""Metric definitions against hand-computed values, and the observations of a trace."""

from __future__ import annotations

import threading

import pytest

from llmspans import _attributes as A
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import (
    HISTOGRAM_BOUNDARIES,
    MAX_DURATION_S,
    Aggregates,
    Labeler,
    Observation,
    PipelineLabeler,
    calibration_bin,
    citation_precision,
    context_precision,
    context_recall,
    ece,
    observations,
)
from llmspans.core.model import Thresholds

from .builders import pipeline_root, record


@pytest.mark.parametrize(
    ("retrieved", "relevant", "expected"),
    [
        # SPEC section 4: [x, REL, y] -> (1/2 * 1) / 1
        (["x", "REL", "y"], {"REL"}, 0.5),
        # RAGAS worked example: relevance 0, 0, 1, 1, 0 -> (1/3 + 2/4) / 2
        (["a", "b", "c", "d", "e"], {"c", "d"}, (1 / 3 + 2 / 4) / 2),
        # relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2
        (["r1", "x", "r2"], {"r1", "r2"}, (1 + 2 / 3) / 2),
        # all relevant at the top -> 1, whatever follows
        (["r1", "r2", "x", "y"], {"r1", "r2"}, 1.0),
        # none relevant -> 0; nothing retrieved -> 0
        (["x", "y"], {"r"}, 0.0),
        ([], {"r"}, 0.0),
        # a relevant id never retrieved does not lower precision (it lowers recall)
        (["r1"], {"r1", "r2"}, 1.0),
    ],
)
def test_context_precision_is_rank_weighted(
    retrieved: list[str], relevant: set[str], expected: float
) -> None:
    assert context_precision(retrieved, relevant) == pytest.approx(expected)


def test_context_precision_and_recall_without_labels_are_undefined() -> None:
    assert context_precision(["a"], []) is None
    assert context_recall(["a"], []) is None


def test_context_recall() -> None:
    assert context_recall(["a", "b", "c"], ["a", "z"]) == 0.5
    assert context_recall(["a", "b"], ["a", "b"]) == 1.0
    assert context_recall([], ["a"]) == 0.0


def test_citation_precision() -> None:
    assert citation_precision(["d1", "d2"], ["d1", "d3"]) == 0.5
    assert citation_precision(["d1", "d1"], ["d1"]) == 1.0
    assert citation_precision([], ["d1"]) is None
    assert citation_precision(["d9"], []) == 0.0


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0.0, 0), (0.05, 0), (0.1, 1), (0.19, 1), (0.5, 5), (0.95, 9), (1.0, 9), (-0.1, 0)],
)
def test_calibration_bin(confidence: float, expected: int) -> None:
    assert calibration_bin(confidence) == expected


def test_ece_hand_computed() -> None:
    # bin 9: 0.9, 0.9, 0.95, 0.95 with 3 correct: accuracy 0.75, mean confidence 0.925
    # bin 6: 0.6, 0.65 with 2 correct: accuracy 1.0, mean confidence 0.625
    # bin 2: 0.2, 0.3 -> bins 2 and 3; 0.2 wrong (acc 0, conf 0.2), 0.3 correct (acc 1, conf 0.3)
    pairs = [
        (0.9, True), (0.9, True), (0.95, True), (0.95, False),
        (0.6, True), (0.65, True),
        (0.2, False), (0.3, True),
    ]  # fmt: skip
    expected = (
        4 / 8 * abs(0.75 - 0.925)
        + 2 / 8 * abs(1.0 - 0.625)
        + 1 / 8 * abs(0.0 - 0.2)
        + 1 / 8 * abs(1.0 - 0.3)
    )
    assert expected == pytest.approx(0.29375)
    assert ece(pairs) == pytest.approx(0.29375)


def test_ece_edge_cases() -> None:
    assert ece([]) is None
    assert ece([(1.0, True), (1.0, True)]) == 0.0
    assert ece([(1.0, False)]) == 1.0
    # perfectly calibrated in aggregate but not within bins still counts per bin
    assert ece([(0.0, True), (1.0, False)]) == 1.0


def test_pipeline_labeler_bounds_cardinality() -> None:
    labeler = PipelineLabeler(limit=2)
    assert [labeler(name) for name in ["a", "b", "c", "a", "d", "b"]] == [
        "a", "b", "other", "a", "other", "b",
    ]  # fmt: skip


def test_pipeline_labeler_is_exact_under_threads() -> None:
    labeler = PipelineLabeler(limit=10)
    results: list[str] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        found = [labeler(f"p{(offset * 7 + index) % 40}") for index in range(200)]
        with lock:
            results.extend(found)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results) - {"other"}) == 10


def _rag_trace() -> list:  # type: ignore[type-arg]
    root = pipeline_root("rag", task_correct=False, duration_ms=2000)
    return [
        root,
        record(
            A.STAGE_RETRIEVAL, parent=root, start=0, duration_ms=40,
            document_ids=("x", "REL", "y"), relevant_ids=("REL", "missing"), cost_usd=0.001,
        ),
        record(
            A.STAGE_CONTEXT_SELECTION, parent=root, start=50, duration_ms=5,
            selected_ids=("REL", "x"),
        ),
        record(
            A.STAGE_GENERATION, parent=root, start=60, duration_ms=800,
            citations=("REL", "zzz"), confidence=0.85, cost_usd=0.02,
        ),
        record(A.STAGE_GENERATION, parent=root, start=900, duration_ms=300, confidence=0.35),
        record(A.STAGE_ACTION, parent=root, start=1300, duration_ms=100, verified=True),
    ]  # fmt: skip


#: the run labels of a production run of pipeline "rag" that names no segment
RAG = (("pipeline", "rag"), ("segment", "none"), ("source", "production"))


def test_observations_of_one_run() -> None:
    result = evaluate_trace(_rag_trace(), Thresholds(min_citation_precision=0.5))
    found = observations(result)
    (verdict,) = [verdict for _, verdict in result.runs]
    assert verdict.outcome == A.OUTCOME_SUCCESS  # citation precision 0.5 passes at 0.5

    def values(instrument: str) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [(o.labels, o.value) for o in found if o.instrument == instrument]

    calls = values(A.METRIC_STAGE_CALLS)
    assert len(calls) == 5
    assert (
        (("pipeline", "rag"), ("stage", "generation"), ("status", "ok")),
        1.0,
    ) in calls
    durations = {
        dict(labels)["stage"]: value
        for labels, value in values(A.METRIC_STAGE_DURATION)
        if dict(labels)["stage"] != "generation"
    }
    assert durations == {"retrieval": 0.04, "context_selection": 0.005, "action": 0.1}
    assert values(A.METRIC_TASK_OUTCOMES) == [((*RAG, ("outcome", "success")), 1.0)]
    assert values(A.METRIC_TASK_DURATION) == [((*RAG, ("outcome", "success")), 2.0)]
    assert values(A.METRIC_STAGE_FAILURES) == []
    ((_, cost),) = values(A.METRIC_TASK_COST)
    assert cost == pytest.approx(0.021)
    labelled = (*RAG, ("basis", "labels"))
    assert values(A.METRIC_CONTEXT_PRECISION) == [(labelled, 0.5)]
    assert values(A.METRIC_CONTEXT_RECALL) == [(labelled, 0.5)]
    assert values(A.METRIC_CITATION_PRECISION) == [(RAG, 0.5)]
    # the last generation's confidence (0.35, bin 3); accuracy from task.correct=False
    assert values(A.METRIC_CALIBRATION_RUNS) == [
        ((*labelled, ("bin", "3"), ("correct", "false")), 1.0)
    ]
    assert values(A.METRIC_CALIBRATION_CONFIDENCE) == [((*labelled, ("bin", "3")), 0.35)]


def test_failed_run_observes_exactly_one_failure() -> None:
    root = pipeline_root("rag")
    trace = [
        root,
        record(A.STAGE_RETRIEVAL, parent=root, document_ids=()),
        record(A.STAGE_GENERATION, parent=root, start=10, refused=True, error=True, confidence=0.9),
    ]
    found = observations(evaluate_trace(trace, Thresholds()))
    failures = [o for o in found if o.instrument == A.METRIC_STAGE_FAILURES]
    assert failures == [
        Observation(
            A.METRIC_STAGE_FAILURES,
            "counter",
            (*RAG, ("stage", "retrieval"), ("reason", "empty")),
            1.0,
        )
    ]
    # accuracy falls back to the outcome (failure): correct=false
    (calibration,) = [o for o in found if o.instrument == A.METRIC_CALIBRATION_RUNS]
    assert dict(calibration.labels)["correct"] == "false"
    statuses = [dict(o.labels)["status"] for o in found if o.instrument == A.METRIC_STAGE_CALLS]
    assert sorted(statuses) == ["error", "ok"]


def test_standalone_and_feedback_observations() -> None:
    other = bytes.fromhex("11" * 16)
    root = pipeline_root("rag")
    trace = [
        record(A.STAGE_GENERATION, trace_id=other),
        record(A.STAGE_RETRIEVAL, trace_id=other, pipeline="search"),
        record(A.STAGE_FEEDBACK, trace_id=other, feedback_kind="edit", pipeline="rag",
               links=((root.trace_id, root.span_id),)),
        record(A.STAGE_FEEDBACK, trace_id=other),
    ]  # fmt: skip
    result = evaluate_trace(trace, Thresholds())
    assert result.runs == []
    found = observations(result)
    assert {o.instrument for o in found} == {
        A.METRIC_STAGE_CALLS,
        A.METRIC_STAGE_DURATION,
        A.METRIC_FEEDBACK,
    }
    pipelines = {dict(o.labels)["pipeline"] for o in found if o.instrument == A.METRIC_STAGE_CALLS}
    assert pipelines == {"unknown", "search"}
    feedback = sorted(o.labels for o in found if o.instrument == A.METRIC_FEEDBACK)
    assert feedback == [
        (("pipeline", "rag"), ("kind", "edit")),
        (("pipeline", "unknown"), ("kind", "unknown")),
    ]


def test_pipeline_label_is_applied_everywhere() -> None:
    result = evaluate_trace(_rag_trace(), Thresholds())
    labeler = Labeler(max_pipelines=1)
    labeler.pipeline("first")  # takes the one slot
    found = observations(result, labeler)
    assert {dict(o.labels)["pipeline"] for o in found} == {"other"}


def test_segment_and_source_label_every_run_metric_and_are_bounded() -> None:
    labeler = Labeler(max_segments=2, segments=["billing"])
    found: list[Observation] = []
    for segment in ["junk-1", "junk-2", "junk-3", "billing", None]:
        root = pipeline_root("rag", segment=segment, source="offline" if segment else "evil")
        trace = [root, record(A.STAGE_RETRIEVAL, parent=root, document_ids=("d",))]
        found += observations(evaluate_trace(trace, Thresholds()), labeler)
    outcomes = [dict(o.labels) for o in found if o.instrument == A.METRIC_TASK_OUTCOMES]
    # the allow-listed segment keeps its label although junk took both free slots first
    assert [(o["segment"], o["source"]) for o in outcomes] == [
        ("junk-1", "offline"),
        ("junk-2", "offline"),
        ("other", "offline"),
        ("billing", "offline"),
        ("none", "other"),
    ]
    # stage metrics are not run metrics: no segment or source there
    calls = [dict(o.labels) for o in found if o.instrument == A.METRIC_STAGE_CALLS]
    assert all("segment" not in labels for labels in calls)
    long = pipeline_root("x" * 300, segment="s" * 300)
    (outcome,) = [
        o
        for o in observations(evaluate_trace([long], Thresholds()), Labeler())
        if o.instrument == A.METRIC_TASK_OUTCOMES
    ]
    assert [len(value.encode()) for _, value in outcome.labels[:2]] == [128, 128]


def test_aggregates_counters_histograms_and_ece() -> None:
    aggregates = Aggregates()
    aggregates.apply(
        [
            Observation(A.METRIC_STAGE_CALLS, "counter", (("pipeline", "a"), ("stage", "r")), 1),
            Observation(A.METRIC_STAGE_CALLS, "counter", (("pipeline", "b"), ("stage", "r")), 2),
            Observation(A.METRIC_STAGE_DURATION, "histogram", (("pipeline", "a"),), 0.01),
            Observation(A.METRIC_STAGE_DURATION, "histogram", (("pipeline", "a"),), 0.02),
            Observation(A.METRIC_STAGE_DURATION, "histogram", (("pipeline", "b"),), 500.0),
        ]
    )
    assert aggregates.counter(A.METRIC_STAGE_CALLS) == 3
    assert aggregates.counter(A.METRIC_STAGE_CALLS, pipeline="b") == 2
    assert aggregates.counter(A.METRIC_STAGE_CALLS, pipeline="zzz") == 0
    histogram = aggregates.histogram(A.METRIC_STAGE_DURATION)
    assert histogram.count == 3 and histogram.sum == pytest.approx(500.03)
    boundaries = HISTOGRAM_BOUNDARIES[A.METRIC_STAGE_DURATION]
    assert histogram.bucket_counts[boundaries.index(0.01)] == 1  # 0.01 <= 0.01
    assert histogram.bucket_counts[boundaries.index(0.025)] == 1
    assert histogram.bucket_counts[-1] == 1  # above every boundary
    assert aggregates.label_values(A.METRIC_STAGE_CALLS, "pipeline") == {"a", "b"}

    pairs = [(0.9, True), (0.9, False), (0.15, False), (0.55, True)]
    calibrated = Aggregates()
    for confidence, correct in pairs:
        root = pipeline_root("p", task_correct=correct)
        trace = [root, record(A.STAGE_GENERATION, parent=root, confidence=confidence)]
        calibrated.apply(observations(evaluate_trace(trace, Thresholds())))
    assert calibrated.ece(pipeline="p") == pytest.approx(ece(pairs))
    assert calibrated.ece(pipeline="none") is None


def test_histogram_boundaries_cover_every_histogram() -> None:
    assert set(HISTOGRAM_BOUNDARIES) == {
        A.METRIC_STAGE_DURATION,
        A.METRIC_TASK_DURATION,
        A.METRIC_CONTEXT_PRECISION,
        A.METRIC_CONTEXT_RECALL,
        A.METRIC_CITATION_PRECISION,
        A.METRIC_CITATION_SUPPORT,
    }
    for boundaries in HISTOGRAM_BOUNDARIES.values():
        assert list(boundaries) == sorted(set(boundaries))
    assert HISTOGRAM_BOUNDARIES[A.METRIC_CONTEXT_PRECISION][-1] == 1.0


def test_a_span_whose_clock_is_off_by_years_adds_at_most_a_week() -> None:
    """end_time far after start_time (start 0, end 2**64 - 1) must not add centuries to
    a duration histogram's sum for good: durations are clamped."""
    root = pipeline_root("rag", start=0, duration_ms=0)
    root.end_ns = 2**64 - 1
    stage = record(A.STAGE_RETRIEVAL, parent=root, document_ids=("d",))
    stage.start_ns, stage.end_ns = 0, 2**64 - 1
    found = observations(evaluate_trace([root, stage], Thresholds()))
    durations = [
        o.value
        for o in found
        if o.instrument in (A.METRIC_TASK_DURATION, A.METRIC_STAGE_DURATION)
    ]
    assert durations == [MAX_DURATION_S, MAX_DURATION_S]


def test_run_label_sets_are_built_once_and_reused() -> None:
    labeler = Labeler()
    found: list[Observation] = []
    for task_correct in (True, False, None):
        root = pipeline_root("rag", segment="billing", task_correct=task_correct)
        trace = [
            root,
            record(A.STAGE_RETRIEVAL, parent=root, document_ids=("d",), relevant_ids=("d",)),
            record(A.STAGE_GENERATION, parent=root, error=True, confidence=0.5),
        ]
        found += observations(evaluate_trace(trace, Thresholds()), labeler)
    by_run = (("pipeline", "rag"), ("segment", "billing"), ("source", "production"))
    # The same label set object for every run of the same run labels, with the same
    # tuples each time: what the store then keys its series by.
    first = labeler.run_labels("rag", pipeline_root("rag", segment="billing"))
    assert first is labeler.run_labels("rag", pipeline_root("rag", segment="billing"))
    assert first.run == by_run
    failures = [o.labels for o in found if o.instrument == A.METRIC_STAGE_FAILURES]
    assert len(failures) == 3 and all(labels is failures[0] for labels in failures)
    assert failures[0] == (*by_run, ("stage", A.STAGE_GENERATION), ("reason", A.REASON_ERROR))
    calls = [o.labels for o in found if o.instrument == A.METRIC_STAGE_CALLS]
    assert set(calls) == {
        (("pipeline", "rag"), ("stage", A.STAGE_RETRIEVAL), ("status", "ok")),
        (("pipeline", "rag"), ("stage", A.STAGE_GENERATION), ("status", "error")),
    }
    # calibration: ground truth gives basis "labels", no ground truth basis "outcome"
    bases = [
        dict(o.labels)["basis"] for o in found if o.instrument == A.METRIC_CALIBRATION_RUNS
    ]
    assert bases == [A.BASIS_LABELS, A.BASIS_LABELS, A.BASIS_OUTCOME]


def test_run_label_sets_stay_bounded_with_unbounded_labels() -> None:
    from llmspans.core import metrics

    labeler = Labeler(bounded=False)
    for index in range(metrics._MAX_LABEL_SETS + 10):
        labeler.run_labels(f"p{index}", pipeline_root(f"p{index}"))
    assert 0 < len(labeler._label_sets) <= metrics._MAX_LABEL_SETS
    # still correct after the cache started over
    again = labeler.run_labels("p1", pipeline_root("p1"))
    assert again.run == (("pipeline", "p1"), ("segment", "none"), ("source", "production"))
