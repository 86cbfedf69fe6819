"""What an ``evaluate {pipeline}`` span carries (docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Sequence

from llmspans import _attributes as A
from llmspans.core.judging import EvaluatedRun, Judgment, judgment_verdict
from llmspans.core.model import Verdict

__all__ = ["evaluation_attributes", "evaluation_span_name"]

AttributeValue = str | bool | float | Sequence[str]

#: Longest explanation kept on a span, in characters.
MAX_EXPLANATION_CHARS = 2000


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
