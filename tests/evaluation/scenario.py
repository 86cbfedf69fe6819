"""Recorded runs for the evaluation tests: sampled runs whose content lives on the
span attributes the app side writes (docs/evaluation.md)."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.trace import Tracer

from llmspans import _attributes as A

#: (documents as (id, text) in rank order, answer, claims by cited id)
_MISSED = (
    [("d-ship", "Shipping takes 3 days."), ("d-hours", "We open at 9.")],
    "Refunds take 3 days.",
    {"d-ship": "Shipping takes 3 days", "d-hours": "Refunds take 3 days"},
)
_WRONG = (
    [("d-hours", "We open at 9."), ("d-refund", "A refund takes 5 days.")],
    "Refunds take 9 days.",
    {"d-hours": "We open at 9", "d-refund": "refunds take 9 days"},
)
_RIGHT = (
    [("d-refund", "A refund takes 5 days."), ("d-hours", "We open at 9.")],
    "Refunds take 5 days.",
    {"d-refund": "A refund takes 5 days", "d-hours": "We open at 9"},
)
#: 4 runs whose retrieval missed the refund document, 3 that retrieved it (rank 2)
#: and answered wrong, 3 that retrieved it (rank 1) and answered right.
RUNS = [_MISSED] * 4 + [_WRONG] * 3 + [_RIGHT] * 3

# Hand-computed judged figures of RUNS (judge in tests/evaluation/judges.py):
#: precision: missed 0, wrong 1/2 (relevant at rank 2), right 1 -> (0*4 + .5*3 + 1*3)/10
JUDGED_PRECISION = 0.45
#: recall (judged sufficiency): 1 for the 6 runs with a relevant document retrieved
JUDGED_RECALL = 0.6
#: support: one of two claims supported in missed and wrong runs, both in right runs
CITATION_SUPPORT = (0.5 * 7 + 1.0 * 3) / 10
MISSED_RELEVANT = 4
INCORRECT_ANSWER = 3


def record_runs(
    tracer: Tracer, runs: list[Any] = RUNS, *, sampled: bool = True, captured: bool = False
) -> None:
    """One pipeline run per entry, each looking successful (task completed, no labels).

    As the library does, the spans with content of a sampled run are marked
    ``llmspans.evaluation.sampled_content`` unless content capture was on (``captured``).
    """
    marked = {A.EVALUATION_SAMPLED_CONTENT: True} if sampled and not captured else {}
    for documents, answer, claims in runs:
        root: dict[str, Any] = {
            A.STAGE: A.STAGE_PIPELINE,
            A.PIPELINE: "support",
            A.TASK_COMPLETED: True,
        }
        if sampled:
            root[A.EVALUATION_SAMPLED] = True
        with tracer.start_as_current_span("invoke_workflow support", attributes=root):
            with tracer.start_as_current_span(
                "retrieval kb",
                attributes={
                    A.STAGE: A.STAGE_RETRIEVAL,
                    A.RETRIEVAL_DOCUMENT_IDS: [doc for doc, _ in documents],
                    A.RETRIEVAL_SCORES: [0.9, 0.8],
                    A.RETRIEVAL_QUERY: "How long does a refund take?",
                    A.RETRIEVAL_DOCUMENTS_CONTENT: json.dumps(dict(documents)),
                    **marked,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "chat m",
                attributes={
                    A.STAGE: A.STAGE_GENERATION,
                    A.GENERATION_CITATIONS: list(claims),
                    A.GENERATION_CONFIDENCE: 0.9,
                    A.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
                    ),
                    A.GENERATION_CLAIMS: json.dumps(claims),
                    **marked,
                },
            ):
                pass
