"""What an ``evaluate {pipeline}`` span carries (docs/evaluation.md).

:func:`evaluation_span` builds the one description of the span of an evaluator call
(name, attributes, the link to the judged run's root, times, error); the collector
encodes it as OTLP (:mod:`llmspans.collector.evaluation`) and the embedded mode
starts it through the app's tracer provider (:mod:`llmspans.embedded`), so both
emit the same span.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmspans import _attributes as A
from llmspans.core.judging import EvaluatedRun, Judgment, judgment_verdict
from llmspans.core.model import Run, Verdict

if TYPE_CHECKING:
    from llmspans.evaluation._runner import Outcome

__all__ = [
    "SCOPE_NAME",
    "EvaluationSpan",
    "evaluation_attributes",
    "evaluation_span",
    "evaluation_span_name",
]

AttributeValue = str | bool | float | Sequence[str]

#: Longest explanation kept on a span, in characters.
MAX_EXPLANATION_CHARS = 2000
#: Longest error detail kept as the span's status description, in characters.
MAX_ERROR_CHARS = 500
#: The instrumentation scope of ``evaluate`` spans (the embedded mode skips its own).
SCOPE_NAME = "llmspans.evaluation"


@dataclass(frozen=True, slots=True)
class EvaluationSpan:
    """The ``evaluate {pipeline}`` span of one evaluator call, before encoding.

    It starts a trace of its own; ``link`` is the (trace id, span id) of the judged
    run's root. ``error`` is the status description of a call that gave no judgment
    (``error`` / ``timeout``), else None.
    """

    name: str
    attributes: dict[str, AttributeValue]
    link: tuple[bytes, bytes]
    start_ns: int
    end_ns: int
    error: str | None


def evaluation_span(
    outcome: Outcome[tuple[Run, Verdict]], judged: Verdict | None
) -> EvaluationSpan:
    """The span of one evaluator call (``judged``: the judged verdict that
    :func:`~llmspans.evaluation._runner.record_outcomes` returned for it)."""
    root = outcome.context[0].root
    end_ns = outcome.end_ns or time.time_ns()
    start_ns = outcome.start_ns or end_ns
    error = None
    if outcome.judgment is None:
        error = (outcome.detail or outcome.status)[:MAX_ERROR_CHARS]
    return EvaluationSpan(
        name=evaluation_span_name(outcome.run),
        attributes=evaluation_attributes(
            outcome.run, outcome.evaluator, outcome.judgment, outcome.status, judged
        ),
        link=(root.trace_id, root.span_id),
        start_ns=start_ns,
        end_ns=max(end_ns, start_ns),
        error=error,
    )


def evaluation_span_name(run: EvaluatedRun) -> str:
    return f"{A.OP_EVALUATE} {run.pipeline}"


def evaluation_attributes(
    run: EvaluatedRun,
    evaluator: str,
    judgment: Judgment | None,
    status: str,
    judged: Verdict | None,
) -> dict[str, AttributeValue]:
    """The attributes of the span of one evaluator call: the run it judged (pipeline,
    segment), the evaluator, its verdict and what it judged, and the judged root cause."""
    attributes: dict[str, AttributeValue] = {
        A.STAGE: A.STAGE_EVALUATION,
        A.PIPELINE: run.pipeline,
        A.EVALUATION_EVALUATOR: evaluator,
        A.EVALUATION_VERDICT: status if judgment is None else judgment_verdict(judgment),
    }
    if run.segment:
        attributes[A.SEGMENT] = run.segment
    if judgment is None:
        return attributes
    if judgment.relevant_ids is not None:
        attributes[A.EVALUATION_RELEVANT_IDS] = list(judgment.relevant_ids)
    if judgment.supported_citations is not None:
        attributes[A.EVALUATION_SUPPORTED] = list(judgment.supported_citations)
    if judgment.unsupported_citations is not None:
        attributes[A.EVALUATION_UNSUPPORTED] = list(judgment.unsupported_citations)
    if judgment.correct is not None:
        attributes[A.EVALUATION_CORRECT] = judgment.correct
    if judgment.score is not None:
        attributes[A.EVALUATION_SCORE] = float(judgment.score)
    if judgment.explanation:
        attributes[A.EVALUATION_EXPLANATION] = judgment.explanation[:MAX_EXPLANATION_CHARS]
    attributes[A.EVALUATION_COST_USD] = float(judgment.cost_usd)
    if judged is not None and judged.failure_stage is not None:
        attributes[A.EVALUATION_FAILURE_STAGE] = judged.failure_stage
        attributes[A.EVALUATION_FAILURE_REASON] = judged.failure_reason or A.REASON_ERROR
    return attributes
