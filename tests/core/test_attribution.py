"""Every rule and reason of SPEC section 5, the precedence between stages, and outcomes."""

from __future__ import annotations

from typing import Any

import pytest

from llmspans import _attributes as A
from llmspans.core.attribution import attribute
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds, Verdict
from llmspans.core.records import SpanRecord

from .builders import pipeline_root, record

R, C, G, X = A.STAGE_RETRIEVAL, A.STAGE_CONTEXT_SELECTION, A.STAGE_GENERATION, A.STAGE_ACTION
FAIL, OK, UNV = A.OUTCOME_FAILURE, A.OUTCOME_SUCCESS, A.OUTCOME_UNVERIFIED

#: A healthy RAG run: retrieval finds the relevant doc, selection keeps it, the answer
#: cites it, the action is verified.
GOOD_R = {"document_ids": ("d1", "d2", "d3"), "scores": (0.9, 0.5, 0.2), "relevant_ids": ("d1",)}
GOOD_C = {"input_ids": ("d1", "d2", "d3"), "selected_ids": ("d1", "d2")}
GOOD_G = {"citations": ("d1",), "refused": False, "output_valid": True, "confidence": 0.8}
GOOD_X = {"verified": True}


def verdict_of(
    stages: list[tuple[str, dict[str, Any]]],
    root: dict[str, Any] | None = None,
    thresholds: Thresholds | None = None,
) -> Verdict:
    """Build a run (stages started in list order, 100 ms apart) and attribute it."""
    pipeline = pipeline_root(**(root or {}))
    spans: list[SpanRecord] = [pipeline]
    for index, (stage, fields) in enumerate(stages):
        spans.append(record(stage, parent=pipeline, start=100 * (index + 1), **fields))
    result = evaluate_trace(spans, thresholds or Thresholds())
    assert len(result.runs) == 1
    run, verdict = result.runs[0]
    assert attribute(run, thresholds or Thresholds()) == verdict
    return verdict


CASES: list[
    tuple[
        str,
        list[tuple[str, dict[str, Any]]],
        dict[str, Any],
        dict[str, Any],
        tuple[str, str | None, str | None],
    ]
] = [
    # --- retrieval -------------------------------------------------------------
    (
        "retrieval error",
        [(R, {"error": True, "error_type": "TimeoutError"})],
        {},
        {},
        (FAIL, R, "error"),
    ),
    ("retrieval empty", [(R, {"document_ids": ()})], {}, {}, (FAIL, R, "empty")),
    (
        "retrieval missed_relevant",
        [(R, {"document_ids": ("d2", "d3"), "relevant_ids": ("d1",)}), (X, GOOD_X)],
        {},
        {},
        (FAIL, R, "missed_relevant"),
    ),
    (
        "retrieval low_relevance",
        [(R, {"document_ids": ("d1", "d2"), "scores": (0.2, 0.29)}), (X, GOOD_X)],
        {},
        {"min_score": 0.3},
        (FAIL, R, "low_relevance"),
    ),
    (
        "low scores without min_score configured do not fire",
        [(R, {"document_ids": ("d1",), "scores": (0.01,)}), (X, GOOD_X)],
        {},
        {},
        (OK, None, None),
    ),
    (
        "one score at min_score keeps retrieval healthy",
        [(R, {"document_ids": ("d1", "d2"), "scores": (0.3, 0.1)}), (X, GOOD_X)],
        {},
        {"min_score": 0.3},
        (OK, None, None),
    ),
    (
        "error wins over empty on the same span",
        [(R, {"error": True, "document_ids": ()})],
        {},
        {},
        (FAIL, R, "error"),
    ),
    (
        "empty wins over missed_relevant",
        [(R, {"document_ids": (), "relevant_ids": ("d1",)})],
        {},
        {},
        (FAIL, R, "empty"),
    ),
    (
        "missed_relevant wins over low_relevance",
        [(R, {"document_ids": ("d2",), "scores": (0.1,), "relevant_ids": ("d1",)})],
        {},
        {"min_score": 0.5},
        (FAIL, R, "missed_relevant"),
    ),
    (
        "a stage fails if any of its spans fails",
        [(R, GOOD_R), (R, {"document_ids": ()}), (X, GOOD_X)],
        {},
        {},
        (FAIL, R, "empty"),
    ),
    # --- context selection -------------------------------------------------------
    ("selection error", [(R, GOOD_R), (C, {"error": True})], {}, {}, (FAIL, C, "error")),
    (
        "selection empty with candidates",
        [(R, GOOD_R), (C, {"input_ids": ("d1", "d2"), "selected_ids": ()})],
        {},
        {},
        (FAIL, C, "empty"),
    ),
    (
        "selection empty: candidates from retrieval when input_ids are absent",
        [(R, {"document_ids": ("d1",)}), (C, {"selected_ids": ()})],
        {},
        {},
        (FAIL, C, "empty"),
    ),
    (
        "selecting nothing from nothing is not a selection failure",
        [(C, {"input_ids": (), "selected_ids": ()}), (X, GOOD_X)],
        {},
        {},
        (OK, None, None),
    ),
    (
        "selection dropped_relevant (labels)",
        [(R, GOOD_R), (C, {"input_ids": ("d1", "d2", "d3"), "selected_ids": ("d2", "d3")})],
        {},
        {},
        (FAIL, C, "dropped_relevant"),
    ),
    (
        "selection dropped_relevant (cited documents, no labels)",
        [
            (R, {"document_ids": ("d1", "d2")}),
            (C, {"selected_ids": ("d2",)}),
            (G, {"citations": ("d1",)}),
        ],
        {},
        {},
        (FAIL, C, "dropped_relevant"),
    ),
    (
        "keeping one of several relevant documents is no drop",
        [
            (R, {"document_ids": ("d1", "d2", "d3"), "relevant_ids": ("d1", "d3")}),
            (C, {"selected_ids": ("d3",)}),
            (X, GOOD_X),
        ],
        {},
        {},
        (OK, None, None),
    ),
    # --- generation ------------------------------------------------------------------
    (
        "generation error",
        [(R, GOOD_R), (C, GOOD_C), (G, {"error": True})],
        {},
        {},
        (FAIL, G, "error"),
    ),
    (
        "generation unsupported_citation",
        [(R, GOOD_R), (C, GOOD_C), (G, {"citations": ("d1", "d9")})],
        {},
        {},
        (FAIL, G, "unsupported_citation"),
    ),
    (
        "citation precision at the configured minimum passes",
        [(R, GOOD_R), (C, GOOD_C), (G, {"citations": ("d1", "d9")}), (X, GOOD_X)],
        {},
        {"min_citation_precision": 0.5},
        (OK, None, None),
    ),
    (
        "citations checked against retrieval when there is no selection step",
        [(R, {"document_ids": ("d1", "d2")}), (G, {"citations": ("d3",)})],
        {},
        {},
        (FAIL, G, "unsupported_citation"),
    ),
    ("generation refused", [(G, {"refused": True})], {}, {}, (FAIL, G, "refused")),
    (
        "generation invalid_output",
        [(G, {"output_valid": False})],
        {},
        {},
        (FAIL, G, "invalid_output"),
    ),
    (
        "refused wins over invalid_output on the same span",
        [(G, {"refused": True, "output_valid": False})],
        {},
        {},
        (FAIL, G, "refused"),
    ),
    # --- action -----------------------------------------------------------------------
    ("action error", [(X, {"error": True})], {}, {}, (FAIL, X, "error")),
    (
        "action verification_failed",
        [(R, GOOD_R), (C, GOOD_C), (G, GOOD_G), (X, {"verified": False, "verification": "no row"})],
        {},
        {},
        (FAIL, X, "verification_failed"),
    ),
    # --- precedence between stages ------------------------------------------------------
    (
        "retrieval beats generation and action",
        [(R, {"document_ids": ()}), (G, {"refused": True}), (X, {"verified": False})],
        {},
        {},
        (FAIL, R, "empty"),
    ),
    (
        "selection beats generation",
        [(R, GOOD_R), (C, {"selected_ids": ("d2",)}), (G, {"citations": ("d1",)})],
        {},
        {},
        (FAIL, C, "dropped_relevant"),
    ),
    (
        "generation beats action",
        [(R, GOOD_R), (C, GOOD_C), (G, {"output_valid": False}), (X, {"error": True})],
        {},
        {},
        (FAIL, G, "invalid_output"),
    ),
    (
        "pipeline order, not start order, decides",
        [(X, {"verified": False}), (G, {"refused": True}), (R, {"error": True})],
        {},
        {},
        (FAIL, R, "error"),
    ),
    (
        "a stage rule beats the root's own error",
        [(G, {"refused": True})],
        {"error": True},
        {},
        (FAIL, G, "refused"),
    ),
    (
        "a stage rule beats completed=True",
        [(X, {"verified": False})],
        {"task_completed": True},
        {},
        (FAIL, X, "verification_failed"),
    ),
    # --- unattributed -----------------------------------------------------------------------
    (
        "root error, no stage to blame",
        [(R, GOOD_R), (C, GOOD_C), (G, GOOD_G)],
        {"error": True},
        {},
        (FAIL, "unattributed", "error"),
    ),
    (
        "task not completed, no stage to blame",
        [(R, GOOD_R), (G, GOOD_G)],
        {"task_completed": False},
        {},
        (FAIL, "unattributed", "task_incomplete"),
    ),
    (
        "root error wins over task_incomplete",
        [],
        {"error": True, "task_completed": False},
        {},
        (FAIL, "unattributed", "error"),
    ),
    (
        "a root with no stage spans that failed",
        [],
        {"error": True},
        {},
        (FAIL, "unattributed", "error"),
    ),
    # --- success and unverified -----------------------------------------------------------------
    ("completed=True", [(R, GOOD_R), (G, GOOD_G)], {"task_completed": True}, {}, (OK, None, None)),
    ("every action verified", [(X, GOOD_X), (X, GOOD_X)], {}, {}, (OK, None, None)),
    ("one action unverified (absent)", [(X, GOOD_X), (X, {})], {}, {}, (UNV, None, None)),
    ("no evidence at all", [(R, GOOD_R), (C, GOOD_C), (G, GOOD_G)], {}, {}, (UNV, None, None)),
    ("a root with no stage spans", [], {}, {}, (UNV, None, None)),
    (
        "absent facts are not failures",
        [(R, {}), (C, {}), (G, {}), (X, {})],
        {},
        {},
        (UNV, None, None),
    ),
]


@pytest.mark.parametrize(
    ("stages", "root", "thresholds", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rule(
    stages: list[tuple[str, dict[str, Any]]],
    root: dict[str, Any],
    thresholds: dict[str, Any],
    expected: tuple[str, str | None, str | None],
) -> None:
    verdict = verdict_of(stages, root, Thresholds(**thresholds))
    assert (verdict.outcome, verdict.failure_stage, verdict.failure_reason) == expected


def test_every_reason_of_the_spec_is_covered() -> None:
    covered = {(case[4][1], case[4][2]) for case in CASES if case[4][0] == FAIL}
    spec = {
        (R, "error"), (R, "empty"), (R, "missed_relevant"), (R, "low_relevance"),
        (C, "error"), (C, "empty"), (C, "dropped_relevant"),
        (G, "error"), (G, "unsupported_citation"), (G, "refused"), (G, "invalid_output"),
        (X, "error"), (X, "verification_failed"),
        ("unattributed", "error"), ("unattributed", "task_incomplete"),
    }  # fmt: skip
    assert spec <= covered


def test_first_failing_span_of_a_stage_decides_the_reason() -> None:
    verdict = verdict_of([(R, {"document_ids": ()}), (R, {"error": True})])
    assert verdict.failure_reason == "empty"
    verdict = verdict_of([(R, {"error": True}), (R, {"document_ids": ()})])
    assert verdict.failure_reason == "error"


def test_evidence_names_the_span_ids_and_numbers() -> None:
    verdict = verdict_of(
        [(R, GOOD_R), (C, GOOD_C), (G, {"citations": ("d1", "d9", "d8"), "name": "chat gpt-x"})],
        thresholds=Thresholds(min_citation_precision=0.9),
    )
    assert verdict.evidence is not None
    assert verdict.evidence.span_name == "chat gpt-x"
    assert verdict.evidence.ids == ("d9", "d8")
    numbers = dict(verdict.evidence.numbers)
    assert numbers["citation_precision"] == pytest.approx(1 / 3)
    assert numbers["min_citation_precision"] == 0.9

    verdict = verdict_of(
        [(R, {"document_ids": ("a",), "scores": (0.1, 0.25)})], thresholds=Thresholds(min_score=0.5)
    )
    assert verdict.evidence is not None
    assert dict(verdict.evidence.numbers) == {"max_score": 0.25, "min_score": 0.5}

    verdict = verdict_of([(X, {"verified": False, "verification": "order not found"})])
    assert verdict.evidence is not None and verdict.evidence.detail == "order not found"

    verdict = verdict_of([(R, {"error": True, "error_type": "TimeoutError"})])
    assert verdict.evidence is not None and verdict.evidence.detail == "TimeoutError"


def test_verdict_fields_are_consistent_with_the_outcome() -> None:
    for case in CASES:
        verdict = verdict_of(case[1], case[2], Thresholds(**case[3]))
        if verdict.outcome == FAIL:
            assert verdict.failure_stage and verdict.failure_reason
        else:
            assert verdict.failure_stage is None and verdict.failure_reason is None


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError):
        Thresholds(min_citation_precision=1.5)
    with pytest.raises(ValueError):
        Thresholds(unknown=1)  # type: ignore[call-arg]
