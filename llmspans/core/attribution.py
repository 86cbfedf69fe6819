"""Attribution: the outcome of a run and, for a failed run, its one root cause.

The rules of docs/conventions.md section 5 run stage by stage in pipeline order (retrieval,
context selection, generation, action). The first stage with a failure is the root
cause; later failures in the same run are its consequences and do not count again.
Inside a stage the spans are checked in start-time order and the first failing
span decides the reason (an earlier failure is the likelier cause of a later one);
for one span the rules are checked in the table's order (``error`` first).

Facts that are absent are never read as failures: a retrieval span without
``llmspans.retrieval.document_ids`` is not ``empty``, a generation without
``llmspans.generation.refused`` did not refuse. Only the values the app recorded
count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmspans import _attributes as A
from llmspans.core.metrics import citation_precision
from llmspans.core.model import Evidence, Run, Thresholds, Verdict
from llmspans.core.records import SpanRecord
from llmspans.core.runs import (
    cited_ids,
    relevant_ids,
    retrieved_id_set,
    selected_context_set,
    unique_ids,
)

__all__ = ["RULES", "attribute"]

_Failure = tuple[str, Evidence]
_Rule = Callable[[SpanRecord, Run, Thresholds], "_Failure | None"]


def _evidence(
    span: SpanRecord,
    ids: Sequence[str] = (),
    numbers: Sequence[tuple[str, float]] = (),
    detail: str = "",
) -> Evidence:
    return Evidence(
        span_id=span.span_id,
        span_name=span.name,
        ids=tuple(ids),
        numbers=tuple(numbers),
        detail=detail,
    )


def _error(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if not span.error:
        return None
    return A.REASON_ERROR, _evidence(span, detail=span.error_type or "span status ERROR")


# --- retrieval ------------------------------------------------------------------


def _retrieval_empty(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if span.document_ids is None or span.document_ids:
        return None
    return A.REASON_EMPTY, _evidence(span, detail="no documents returned")


def _retrieval_missed(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if not span.relevant_ids or span.document_ids is None:
        return None
    if set(span.relevant_ids) & set(span.document_ids):
        return None
    return A.REASON_MISSED_RELEVANT, _evidence(
        span, ids=span.relevant_ids, detail="no relevant document among those retrieved"
    )


def _retrieval_low(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if thresholds.min_score is None or not span.scores:
        return None
    best = max(span.scores)
    if best >= thresholds.min_score:
        return None
    return A.REASON_LOW_RELEVANCE, _evidence(
        span,
        numbers=(("max_score", best), ("min_score", thresholds.min_score)),
        detail="every score below min_score",
    )


# --- context selection -------------------------------------------------------------


def _selection_empty(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if span.selected_ids is None or span.selected_ids:
        return None
    candidates = span.input_ids if span.input_ids is not None else retrieved_id_set(run)
    if not candidates:
        return None
    return A.REASON_EMPTY, _evidence(
        span, numbers=(("candidates", float(len(candidates))),), detail="nothing selected"
    )


def _selection_dropped(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if span.selected_ids is None:
        return None
    retrieved_set = retrieved_id_set(run)
    candidates = set(span.input_ids) if span.input_ids is not None else retrieved_set
    labels = relevant_ids(run)
    if labels:
        source = "labels"
        wanted = [doc for doc in labels if doc in candidates]
    else:
        source = "citations"
        wanted = [doc for doc in cited_ids(run) if doc in candidates and doc in retrieved_set]
    if not wanted or set(wanted) & set(span.selected_ids):
        return None
    return A.REASON_DROPPED_RELEVANT, _evidence(
        span, ids=wanted, detail=f"relevant documents ({source}) retrieved but none selected"
    )


# --- generation --------------------------------------------------------------------


def _generation_citation(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if not span.citations:
        return None
    shown = selected_context_set(run)
    if shown is None:
        return None
    precision = citation_precision(span.citations, shown)
    if precision is None or precision >= thresholds.min_citation_precision:
        return None
    return A.REASON_UNSUPPORTED_CITATION, _evidence(
        span,
        ids=[doc for doc in unique_ids(span.citations) if doc not in shown],
        numbers=(
            ("citation_precision", precision),
            ("min_citation_precision", thresholds.min_citation_precision),
        ),
        detail="cites documents the model was not shown",
    )


def _generation_refused(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if span.refused is not True:
        return None
    return A.REASON_REFUSED, _evidence(span, detail="the model declined or gave no answer")


def _generation_invalid(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if span.output_valid is not False:
        return None
    return A.REASON_INVALID_OUTPUT, _evidence(span, detail="output failed validation")


# --- action -------------------------------------------------------------------------


def _action_verification(span: SpanRecord, run: Run, thresholds: Thresholds) -> _Failure | None:
    if span.verified is not False:
        return None
    return A.REASON_VERIFICATION_FAILED, _evidence(
        span, detail=span.verification or "downstream check failed"
    )


#: The rules of docs/conventions.md section 5, per stage, in the table's order.
RULES: dict[str, tuple[_Rule, ...]] = {
    A.STAGE_RETRIEVAL: (_error, _retrieval_empty, _retrieval_missed, _retrieval_low),
    A.STAGE_CONTEXT_SELECTION: (_error, _selection_empty, _selection_dropped),
    A.STAGE_GENERATION: (_error, _generation_citation, _generation_refused, _generation_invalid),
    A.STAGE_ACTION: (_error, _action_verification),
}


def attribute(run: Run, thresholds: Thresholds) -> Verdict:
    """Decide a run's outcome and, when it failed, its single root-cause stage and reason.

    ``failure`` when a stage rule fired (the first stage in pipeline order) or, with
    no stage to blame, when the root span errored (``unattributed``/``error``) or the
    app set ``llmspans.task.completed`` to false (``unattributed``/``task_incomplete``).
    Otherwise ``success`` when the app said the task completed or every action span
    (at least one) was verified, else ``unverified``: never a success without evidence.
    """
    for stage in A.PIPELINE_ORDER:
        rules = RULES[stage]
        for span in run.stages.get(stage, ()):
            for rule in rules:
                failure = rule(span, run, thresholds)
                if failure is not None:
                    reason, evidence = failure
                    return Verdict(A.OUTCOME_FAILURE, stage, reason, evidence)
    root = run.root
    if root.error:
        return Verdict(
            A.OUTCOME_FAILURE,
            A.STAGE_UNATTRIBUTED,
            A.REASON_ERROR,
            _evidence(root, detail=root.error_type or "pipeline span status ERROR"),
        )
    if root.task_completed is False:
        return Verdict(
            A.OUTCOME_FAILURE,
            A.STAGE_UNATTRIBUTED,
            A.REASON_TASK_INCOMPLETE,
            _evidence(root, detail="the app reported the task as not completed"),
        )
    if root.task_completed is True:
        return Verdict(A.OUTCOME_SUCCESS, evidence=_evidence(root, detail="task completed"))
    actions = run.stages.get(A.STAGE_ACTION, ())
    if actions and all(span.verified is True for span in actions):
        return Verdict(
            A.OUTCOME_SUCCESS,
            evidence=_evidence(
                root,
                numbers=(("verified_actions", float(len(actions))),),
                detail="every action verified",
            ),
        )
    return Verdict(A.OUTCOME_UNVERIFIED)
