"""Continuous evaluation in the core: sampled runs, judgments, judged metrics.

Pure functions over plain data, shared by the collector, the embedded mode and
``llmspans analyze --evaluator`` (docs/evaluation.md):

* :func:`should_sample` decides, from the trace id alone, whether a run is sampled
  (as OpenTelemetry's ``TraceIdRatioBased``: every process agrees).
* :func:`sampled_run` turns an assembled run whose root carries
  ``llmspans.evaluation.sampled = true`` into the :class:`EvaluatedRun` an evaluator
  receives, reading the content from the span attributes.
* :func:`judged_verdict` re-runs the attribution rules with the judged labels.
* :func:`accumulate_judgment` turns one judgment into measurements written to any
  :class:`~llmspans.core.metrics.MetricSink` (the store, the report, ``Aggregates``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from llmspans import _attributes as A
from llmspans.core.attribution import attribute
from llmspans.core.metrics import (
    Aggregates,
    HistogramData,
    Labeler,
    Labels,
    MetricSink,
    calibration_labels,
    context_precision,
    cut_label,
    run_confidence,
    run_correct,
)
from llmspans.core.model import Run, Thresholds, TraceResult, Verdict
from llmspans.core.runs import relevant_ids, retrieved_ids, selected_context

__all__ = [
    "Document",
    "EvaluatedRun",
    "Judgment",
    "accumulate_judgment",
    "judged_verdict",
    "sampled_run",
    "sampled_runs",
    "should_sample",
    "summarise",
]

#: The largest trace id ratio ``TraceIdRatioBased`` compares against (the low 64 bits).
_TRACE_ID_LIMIT: Final = (1 << 64) - 1
#: Most documents an :class:`EvaluatedRun` carries (the first ones in rank order).
MAX_RUN_DOCUMENTS: Final = 1000
#: Longest text of one piece of content in an :class:`EvaluatedRun`, in characters.
MAX_TEXT_CHARS: Final = 20_000
#: Verdict label of a judgment, and of an evaluator call that gave none.
VERDICT_ERROR: Final = "error"
VERDICT_TIMEOUT: Final = "timeout"
UNLABELLED: Final = "unjudged"


def should_sample(
    trace_id: bytes | int,
    rate: float,
    segment: str | None = None,
    overrides: Mapping[str, float] | None = None,
) -> bool:
    """Whether a run is sampled for evaluation, as ``TraceIdRatioBased(rate)`` decides.

    The decision depends on the low 64 bits of the trace id only, so every process
    and every replica agrees. ``overrides`` maps a segment to its own rate.
    """
    if overrides and segment is not None and segment in overrides:
        rate = overrides[segment]
    if not rate > 0.0:
        return False
    bound = round(min(rate, 1.0) * (_TRACE_ID_LIMIT + 1))
    value = trace_id if isinstance(trace_id, int) else int.from_bytes(trace_id, "big")
    return (value & _TRACE_ID_LIMIT) < bound


@dataclass(frozen=True, slots=True)
class Document:
    """A retrieved document: its id, its text (None when not recorded) and its score."""

    id: str
    text: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True)
class EvaluatedRun:
    """One finished, sampled run as an evaluator sees it (public name ``Run``).

    ``documents`` are in retrieval rank order; ``citations`` maps each cited id to
    the claim it is cited for (None when the app recorded no claim); ``outcome`` is
    the outcome the app's own signals gave (``success``/``failure``/``unverified``).
    """

    pipeline: str
    segment: str | None = None
    source: str | None = None
    trace_id: str = ""
    input: str | None = None
    documents: tuple[Document, ...] = ()
    selected_ids: tuple[str, ...] | None = None
    answer: str | None = None
    citations: Mapping[str, str | None] = field(default_factory=dict)
    confidence: float | None = None
    outcome: str = A.OUTCOME_UNVERIFIED


@dataclass(frozen=True, slots=True)
class Judgment:
    """What an evaluator says about one run; a field left None is "not judged".

    ``relevant_ids``: the retrieved documents judged relevant to the input.
    ``supported_citations`` / ``unsupported_citations``: cited ids whose document does
    (not) support the claim it is cited for. ``correct``: the answer judged right.
    ``score`` in [0, 1] and ``explanation`` are free; ``cost_usd`` is the judge's cost.
    """

    relevant_ids: Sequence[str] | None = None
    supported_citations: Sequence[str] | None = None
    unsupported_citations: Sequence[str] | None = None
    correct: bool | None = None
    score: float | None = None
    explanation: str | None = None
    cost_usd: float = 0.0


# --- extraction --------------------------------------------------------------------


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _plain_text(value: Any) -> str | None:
    """Text of recorded content: a string, or the text parts of chat messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("content", "text", "answer", "output"):
            found = value.get(key)
            if isinstance(found, str):
                return found
        parts = value.get("parts")
        if isinstance(parts, list):
            return _plain_text(parts)
        return None
    if isinstance(value, list):
        texts = [text for text in (_plain_text(item) for item in value[:100]) if text]
        return "\n".join(texts) if texts else None
    return None


def _content_text(raw: str | None) -> str | None:
    """A content attribute as text: JSON decoded where it is JSON, else as recorded."""
    if raw is None:
        return None
    decoded = _loads(raw)
    text = _plain_text(decoded) if decoded is not None else raw
    return _cut(text if text is not None else raw)


def _document_texts(raw: str | None, ids: Sequence[str]) -> dict[str, str]:
    """Texts by id from ``llmspans.retrieval.documents``: a JSON object id -> text, a
    JSON list of objects with ``id`` and ``text``, or a JSON list of texts in the
    order of ``llmspans.retrieval.document_ids``."""
    decoded = _loads(raw)
    found: dict[str, str] = {}
    if isinstance(decoded, Mapping):
        for key, value in decoded.items():
            text = _plain_text(value)
            if text is not None:
                found[str(key)] = text
    elif isinstance(decoded, list):
        for index, item in enumerate(decoded[: len(ids) + MAX_RUN_DOCUMENTS]):
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                text = _plain_text(item.get("text", item.get("content")))
                if text is not None:
                    found[item["id"]] = text
            elif index < len(ids):
                text = _plain_text(item)
                if text is not None:
                    found[ids[index]] = text
    return found


def _claims(raw: str | None) -> dict[str, str | None]:
    decoded = _loads(raw)
    if not isinstance(decoded, Mapping):
        return {}
    return {
        str(key): _cut(value) if isinstance(value, str) else None
        for key, value in list(decoded.items())[:MAX_RUN_DOCUMENTS]
    }


def sampled_run(run: Run, verdict: Verdict) -> EvaluatedRun | None:
    """The :class:`EvaluatedRun` of a run whose root says it was sampled, else None.

    Content is read from the spans: the input from the root's or the first
    retrieval's ``llmspans.retrieval.query`` (else the first generation's
    ``gen_ai.input.messages``), documents from the retrievals (ids, scores and
    ``llmspans.retrieval.documents``), the answer from the last generation's
    ``gen_ai.output.messages``, citations from the generations' citation ids with the
    claims of ``llmspans.generation.claims``. At most :data:`MAX_RUN_DOCUMENTS`
    documents and :data:`MAX_TEXT_CHARS` characters per text are kept.
    """
    root = run.root
    if root.evaluation_sampled is not True:
        return None
    retrievals = run.stages.get(A.STAGE_RETRIEVAL, ())
    generations = run.stages.get(A.STAGE_GENERATION, ())
    question = root.query
    for span in retrievals:
        if question is None:
            question = span.query
    if question is None:
        question = next(
            (text for text in (_content_text(g.input_messages) for g in generations) if text),
            None,
        )
    documents: list[Document] = []
    seen: set[str] = set()
    for span in retrievals:
        ids = span.document_ids or ()
        texts = _document_texts(span.documents_content, ids)
        scores = span.scores or ()
        for index, doc in enumerate(ids):
            if doc in seen or len(documents) >= MAX_RUN_DOCUMENTS:
                continue
            seen.add(doc)
            score = scores[index] if index < len(scores) else None
            documents.append(Document(doc, _cut(texts.get(doc)), score))
    answer = None
    citations: dict[str, str | None] = {}
    for span in generations:
        text = _content_text(span.output_messages)
        if text is not None:
            answer = text
        claims = _claims(span.claims)
        for doc in span.citations or ():
            citations.setdefault(doc, claims.get(doc))
        for doc, claim in claims.items():
            if citations.get(doc) is None:
                citations[doc] = claim
    selected = selected_context(run)
    return EvaluatedRun(
        pipeline=run.pipeline,
        segment=root.segment,
        source=root.source,
        trace_id=root.trace_id.hex(),
        input=_cut(question),
        documents=tuple(documents),
        selected_ids=selected[:MAX_RUN_DOCUMENTS] if selected is not None else None,
        answer=answer,
        citations=citations,
        confidence=run_confidence(run),
        outcome=verdict.outcome,
    )


# --- judged attribution ---------------------------------------------------------------


def _known(ids: Sequence[str] | None, allowed: frozenset[str]) -> tuple[str, ...] | None:
    """Judged ids restricted to the ids the run has (a judge may name others)."""
    if not isinstance(ids, list | tuple):
        return None  # None, or not a list of ids at all: not judged
    # A judge cannot name more distinct ids than the run has; a longer list is cut.
    bounded = ids[: 10 * MAX_RUN_DOCUMENTS]
    return tuple(dict.fromkeys(doc for doc in bounded if isinstance(doc, str) and doc in allowed))


def clean_judgment(judgment: Judgment, evaluated: EvaluatedRun) -> Judgment:
    """``judgment`` with ids the run never retrieved (or never cited) left out and the
    score, correctness and cost checked: what every sink records."""
    retrieved = frozenset(document.id for document in evaluated.documents)
    cited = frozenset(evaluated.citations)
    score = judgment.score
    if score is not None and not (isinstance(score, int | float) and 0.0 <= score <= 1.0):
        score = None
    cost = judgment.cost_usd
    if not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        cost = 0.0
    correct = judgment.correct if isinstance(judgment.correct, bool) else None
    return replace(
        judgment,
        relevant_ids=_known(judgment.relevant_ids, retrieved),
        supported_citations=_known(judgment.supported_citations, cited),
        unsupported_citations=_known(judgment.unsupported_citations, cited),
        correct=correct,
        score=score,
        cost_usd=float(cost),
    )


def judged_verdict(run: Run, judgment: Judgment, thresholds: Thresholds) -> Verdict:
    """The attribution rules over the run with the judged labels: judged relevant ids
    as ``relevant_ids`` of the retrievals, judged ``correct`` as ``task.correct``.

    A run judged wrong that no stage rule blames is a ``generation/incorrect_answer``
    failure when a judged-relevant document was shown to the model, else
    ``retrieval/missed_relevant`` when no retrieved document was judged relevant.
    The run itself is not changed.
    """
    judged = judgment.relevant_ids
    stages = dict(run.stages)
    retrievals = stages.get(A.STAGE_RETRIEVAL, [])
    if judged is not None and retrievals:
        stages[A.STAGE_RETRIEVAL] = [
            replace(span, relevant_ids=tuple(judged) or None) for span in retrievals
        ]
    root = run.root
    if judgment.correct is not None:
        root = replace(root, task_correct=judgment.correct)
    relabelled = Run(root=root, pipeline=run.pipeline, stages=stages, spans=run.spans)
    verdict = attribute(relabelled, thresholds)
    if verdict.outcome == A.OUTCOME_FAILURE or judgment.correct is not False:
        if judgment.correct is True and verdict.outcome == A.OUTCOME_UNVERIFIED:
            return Verdict(A.OUTCOME_SUCCESS)
        return verdict
    if judged is not None and not judged and retrievals:
        return Verdict(A.OUTCOME_FAILURE, A.STAGE_RETRIEVAL, A.REASON_MISSED_RELEVANT)
    shown = selected_context(run)
    if judged and shown is not None and set(judged) & set(shown):
        return Verdict(A.OUTCOME_FAILURE, A.STAGE_GENERATION, A.REASON_INCORRECT_ANSWER)
    return Verdict(A.OUTCOME_FAILURE, A.STAGE_UNATTRIBUTED, A.REASON_INCORRECT_ANSWER)


# --- measurements ---------------------------------------------------------------------


def judgment_verdict(judgment: Judgment) -> str:
    """The ``verdict`` label of a judgment: ``correct``/``incorrect`` when correctness
    was judged, else ``judged``."""
    if judgment.correct is True:
        return "correct"
    if judgment.correct is False:
        return "incorrect"
    return "judged"


def citation_support(judgment: Judgment) -> float | None:
    """Supported / (supported + unsupported) distinct cited ids; None when none judged."""
    supported = set(judgment.supported_citations or ())
    unsupported = set(judgment.unsupported_citations or ()) - supported
    total = len(supported) + len(unsupported)
    return len(supported) / total if total else None


def accumulate_judgment(
    run: Run,
    verdict: Verdict,
    evaluated: EvaluatedRun,
    judgment: Judgment,
    *,
    evaluator: str,
    thresholds: Thresholds,
    sink: MetricSink,
    labeler: Labeler | None = None,
) -> Verdict:
    """Record one judgment of one run into ``sink``; returns the judged verdict.

    Judged context precision (rank-weighted over the retrieved documents, relevance
    from the judge) and judged context recall (1 when the judge found a relevant
    document among those retrieved, else 0: the judged sufficiency of the retrieved
    context, never a ratio over a relevant set the judge could not see) under
    ``basis="judge"``; citation support per judged generation; the calibration
    counters under ``basis="judge"`` when the answer's correctness was judged; the
    judged root cause of a run judged as failed; the evaluation itself, its cost, and
    the judge's agreement with the app's own labels where the run has them.
    """
    clean = clean_judgment(judgment, evaluated)
    labels = labeler or Labeler(bounded=False)
    by_run = labels.run(labels.pipeline(run.pipeline), run.root)
    pipeline = by_run[0][1]
    name = cut_label(evaluator)
    sink.count(
        A.METRIC_EVALUATIONS,
        (("pipeline", pipeline), ("evaluator", name), ("verdict", judgment_verdict(clean))),
        1.0,
    )
    sink.count(
        A.METRIC_EVALUATION_COST, (("pipeline", pipeline), ("evaluator", name)), clean.cost_usd
    )
    judge_basis: Labels = (*by_run, ("basis", A.BASIS_JUDGE))
    retrieved = [document.id for document in evaluated.documents]
    if clean.relevant_ids is not None and retrieved:
        precision = context_precision(retrieved, clean.relevant_ids)
        sink.observe(A.METRIC_CONTEXT_PRECISION, judge_basis, precision or 0.0)
        sink.observe(A.METRIC_CONTEXT_RECALL, judge_basis, 1.0 if clean.relevant_ids else 0.0)
    support = citation_support(clean)
    if support is not None:
        sink.observe(A.METRIC_CITATION_SUPPORT, by_run, support)
    confidence = evaluated.confidence
    if confidence is not None and clean.correct is not None:
        runs, confidence_sum = calibration_labels(judge_basis, confidence, clean.correct)
        sink.count(A.METRIC_CALIBRATION_RUNS, runs, 1.0)
        sink.count(A.METRIC_CALIBRATION_CONFIDENCE, confidence_sum, confidence)
    judged = judged_verdict(run, clean, thresholds)
    if judged.outcome == A.OUTCOME_FAILURE:
        sink.count(
            A.METRIC_JUDGED_FAILURES,
            (
                *by_run,
                ("stage", judged.failure_stage or A.STAGE_UNATTRIBUTED),
                ("reason", judged.failure_reason or A.REASON_ERROR),
            ),
            1.0,
        )
    _agreement(run, verdict, clean, name, sink)
    return judged


def _agreement(
    run: Run, verdict: Verdict, judgment: Judgment, evaluator: str, sink: MetricSink
) -> None:
    """Judge against the app's labels: relevance per retrieved document, correctness per run."""
    labelled = relevant_ids(run)
    if labelled and judgment.relevant_ids is not None:
        truth = set(labelled)
        judged = set(judgment.relevant_ids)
        for doc in retrieved_ids(run)[:MAX_RUN_DOCUMENTS]:
            agree = (doc in truth) == (doc in judged)
            sink.count(
                A.METRIC_JUDGE_AGREEMENT,
                (("evaluator", evaluator), ("aspect", "relevance"), ("agree", _flag(agree))),
                1.0,
            )
    if run.root.task_correct is not None and judgment.correct is not None:
        agree = run_correct(run, verdict) == judgment.correct
        sink.count(
            A.METRIC_JUDGE_AGREEMENT,
            (("evaluator", evaluator), ("aspect", "correctness"), ("agree", _flag(agree))),
            1.0,
        )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def record_dropped(sink: MetricSink, reason: str, count: float = 1.0) -> None:
    """Count sampled runs not evaluated (queue full, budget spent, shutdown)."""
    sink.count(A.METRIC_EVALUATION_DROPPED, (("reason", reason),), count)


def count_unjudged(
    run: Run, evaluator: str, verdict: str, sink: MetricSink, labeler: Labeler | None = None
) -> None:
    """Count an evaluator call that gave no judgment (``error`` or ``timeout``)."""
    labels = labeler or Labeler(bounded=False)
    sink.count(
        A.METRIC_EVALUATIONS,
        (
            ("pipeline", labels.pipeline(run.pipeline)),
            ("evaluator", cut_label(evaluator)),
            ("verdict", verdict),
        ),
        1.0,
    )


def sampled_runs(result: TraceResult) -> list[tuple[Run, Verdict, EvaluatedRun]]:
    """The sampled runs of one evaluated trace, each with its verdict and what an
    evaluator receives."""
    found: list[tuple[Run, Verdict, EvaluatedRun]] = []
    for run, verdict in result.runs:
        evaluated = sampled_run(run, verdict)
        if evaluated is not None:
            found.append((run, verdict, evaluated))
    return found


def summarise(judged: Aggregates, sampled: int) -> dict[str, Any]:
    """The judged figures of a report (``llmspans analyze --evaluator``), JSON-ready:
    per pipeline the mean judged context precision and recall, the mean citation
    support and the judged root causes; per evaluator its verdicts, cost and agreement
    with the app's labels; drops by reason."""
    pipelines: dict[str, dict[str, Any]] = {}

    def pipeline_of(labels: Labels) -> dict[str, Any]:
        name = dict(labels)["pipeline"]
        return pipelines.setdefault(
            name,
            {
                "context_precision": None,
                "context_recall": None,
                "citation_support": None,
                "judged_runs": 0,
                "judged_failures": {},
            },
        )

    for key, instrument in (
        ("context_precision", A.METRIC_CONTEXT_PRECISION),
        ("context_recall", A.METRIC_CONTEXT_RECALL),
        ("citation_support", A.METRIC_CITATION_SUPPORT),
    ):
        sums: dict[str, tuple[float, int]] = {}
        for labels, data in judged.series(instrument).items():
            if (
                not isinstance(data, HistogramData)
                or dict(labels).get("basis", A.BASIS_JUDGE) != A.BASIS_JUDGE
            ):
                continue
            entry = pipeline_of(labels)
            total, count = sums.get(entry_name := dict(labels)["pipeline"], (0.0, 0))
            sums[entry_name] = (total + data.sum, count + data.count)
            entry[key] = round((total + data.sum) / (count + data.count), 6)
    for labels, value in judged.series(A.METRIC_JUDGED_FAILURES).items():
        found = dict(labels)
        failures = pipeline_of(labels)["judged_failures"]
        key = f"{found['stage']}/{found['reason']}"
        failures[key] = failures.get(key, 0) + int(_number(value))
    evaluators: dict[str, dict[str, Any]] = {}
    for labels, value in judged.series(A.METRIC_EVALUATIONS).items():
        found = dict(labels)
        entry = evaluators.setdefault(
            found["evaluator"], {"verdicts": {}, "cost_usd": 0.0, "agreement": {}}
        )
        verdicts = entry["verdicts"]
        verdicts[found["verdict"]] = verdicts.get(found["verdict"], 0) + int(_number(value))
        if found["verdict"] not in (VERDICT_ERROR, VERDICT_TIMEOUT):
            pipeline_of(labels)["judged_runs"] += int(_number(value))
    for labels, value in judged.series(A.METRIC_EVALUATION_COST).items():
        found = dict(labels)
        entry = evaluators.setdefault(
            found["evaluator"], {"verdicts": {}, "cost_usd": 0.0, "agreement": {}}
        )
        entry["cost_usd"] = round(entry["cost_usd"] + _number(value), 9)
    for labels, value in judged.series(A.METRIC_JUDGE_AGREEMENT).items():
        found = dict(labels)
        entry = evaluators.setdefault(
            found["evaluator"], {"verdicts": {}, "cost_usd": 0.0, "agreement": {}}
        )
        aspect = entry["agreement"].setdefault(found["aspect"], {"agree": 0, "disagree": 0})
        aspect["agree" if found["agree"] == "true" else "disagree"] += int(_number(value))
    dropped = {
        dict(labels)["reason"]: int(_number(value))
        for labels, value in judged.series(A.METRIC_EVALUATION_DROPPED).items()
    }
    return {
        "sampled_runs": sampled,
        "dropped": dict(sorted(dropped.items())),
        "evaluators": dict(sorted(evaluators.items())),
        "pipelines": dict(sorted(pipelines.items())),
    }


def _number(value: float | HistogramData) -> float:
    return value if isinstance(value, float | int) else float(value.count)
