"""A mixed workload of pipeline runs made with the plain OpenTelemetry SDK tracer.

Each run is one trace shaped like the decorators' output (SPEC sections 2 and 3):
a pipeline span and stage spans carrying the attribute constants. The mix covers
every outcome, several failure reasons, labels, citations, confidences, costs,
standalone stage spans and feedback, so that two evaluators over it can be compared
number by number.
"""

from __future__ import annotations

import random
from typing import Any

from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer

from llmspans import _attributes as A

DOCS = [f"doc-{index}" for index in range(8)]


def _stage(
    tracer: Tracer,
    stage: str,
    detail: str,
    pipeline: str,
    attributes: dict[str, Any],
    *,
    error: bool = False,
    kind: SpanKind = SpanKind.INTERNAL,
) -> None:
    with tracer.start_as_current_span(
        A.span_name(stage, detail),
        kind=kind,
        attributes={A.STAGE: stage, **({A.PIPELINE: pipeline} if pipeline else {}), **attributes},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if error:
            span.set_attribute(A.ERROR_TYPE, "RuntimeError")
            span.set_status(Status(StatusCode.ERROR, "stage failed"))


def run_pipeline(tracer: Tracer, rng: random.Random, pipeline: str) -> None:
    """One run with randomly healthy or broken stages."""
    root_attributes: dict[str, Any] = {A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: pipeline}
    roll = rng.random()
    if roll < 0.15:
        root_attributes[A.TASK_COMPLETED] = rng.random() < 0.5
    if rng.random() < 0.5:
        root_attributes[A.TASK_CORRECT] = rng.random() < 0.6
    with tracer.start_as_current_span(
        A.span_name(A.STAGE_PIPELINE, pipeline), attributes=root_attributes
    ) as root:
        retrieved = rng.sample(DOCS, rng.choice([0, 3, 4, 4, 5, 5]))
        relevant = rng.sample(DOCS, rng.randint(1, 2)) if rng.random() < 0.6 else []
        retrieval: dict[str, Any] = {
            A.RETRIEVAL_DOCUMENT_IDS: retrieved,
            A.RETRIEVAL_SCORES: sorted((rng.random() for _ in retrieved), reverse=True),
        }
        if relevant:
            retrieval[A.RETRIEVAL_RELEVANT_IDS] = relevant
        _stage(
            tracer,
            A.STAGE_RETRIEVAL,
            "faq",
            pipeline,
            retrieval,
            error=rng.random() < 0.05,
            kind=SpanKind.CLIENT,
        )
        selected = retrieved[: rng.randint(0, 3)] if rng.random() < 0.3 else retrieved[:3]
        _stage(
            tracer,
            A.STAGE_CONTEXT_SELECTION,
            "top3",
            pipeline,
            {A.CONTEXT_INPUT_IDS: retrieved, A.CONTEXT_SELECTED_IDS: selected},
            error=rng.random() < 0.03,
        )
        for _ in range(rng.choice([1, 1, 2])):
            shown = selected or ["none"]
            citations = [rng.choice(shown)] if rng.random() < 0.85 else [rng.choice(DOCS)]
            generation: dict[str, Any] = {
                A.GENERATION_CITATIONS: citations,
                A.COST_USD: round(rng.uniform(0.0005, 0.01), 6),
                A.GEN_AI_REQUEST_MODEL: "model-a",
            }
            if rng.random() < 0.8:
                generation[A.GENERATION_CONFIDENCE] = round(rng.random(), 3)
            if rng.random() < 0.1:
                generation[A.GENERATION_REFUSED] = True
            if rng.random() < 0.1:
                generation[A.GENERATION_OUTPUT_VALID] = False
            _stage(
                tracer,
                A.STAGE_GENERATION,
                "model-a",
                pipeline,
                generation,
                error=rng.random() < 0.03,
                kind=SpanKind.CLIENT,
            )
        if rng.random() < 0.7:
            verified = rng.random() < 0.85
            action: dict[str, Any] = {A.ACTION_VERIFIED: verified, A.GEN_AI_TOOL_NAME: "refund"}
            if not verified:
                action[A.ACTION_VERIFICATION] = "no refund row"
            _stage(tracer, A.STAGE_ACTION, "refund", pipeline, action)
        if rng.random() < 0.05:
            root.set_status(Status(StatusCode.ERROR, "pipeline failed"))
        context = root.get_span_context()
    if rng.random() < 0.3:
        with tracer.start_as_current_span(
            A.span_name(A.STAGE_FEEDBACK, "edit"),
            links=[Link(context)],
            attributes={
                A.STAGE: A.STAGE_FEEDBACK,
                A.PIPELINE: pipeline,
                A.FEEDBACK_KIND: rng.choice(A.FEEDBACK_KINDS),
            },
        ):
            pass


def run_workload(tracer: Tracer, runs: int, seed: int = 7) -> None:
    """``runs`` pipeline runs over three pipelines, plus a few standalone stage spans."""
    rng = random.Random(seed)
    for index in range(runs):
        run_pipeline(tracer, rng, rng.choice(["support", "search", "agent"]))
        if index % 10 == 0:
            _stage(
                tracer,
                A.STAGE_GENERATION,
                "model-b",
                "",
                {A.COST_USD: 0.001},
                kind=SpanKind.CLIENT,
            )
