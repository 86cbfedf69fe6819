"""Assembling runs from span records.

A *run* is the spans under one ``pipeline`` span (docs/conventions.md section 5). Real traces are
messy, and :func:`assemble` decides as follows:

* Each span belongs to the run of its **nearest** pipeline ancestor, so the spans
  of a nested pipeline belong to the nested run (which is a run of its own).
* A span whose parent never arrived (lost, sampled out, still in flight) cannot
  be placed by ancestry. It joins the run of its trace when the trace holds
  **exactly one** run; with none or several runs it is not guessed into one: a
  stage span is then *standalone* (stage metrics only), any other span is left out.
* Feedback spans are never part of a run: they are returned on their own, whether
  their trace is a run's trace or a trace of their own.
* Stage spans outside any pipeline are standalone.
* A span of another convention that opens a run (an OpenInference CHAIN or AGENT,
  an OpenLLMetry workflow, an ``invoke_workflow`` / ``invoke_agent`` span; see
  :mod:`llmspans.core.conventions`) starts a run when it is the **top** one: when
  no pipeline span and no other such span is among its ancestors. A chain nested in
  an llmspans pipeline, or in another chain, is a step of the enclosing run. (One
  without a parent is marked a ``pipeline`` span by the converters already.) A
  missing parent ends the walk: the span is the top of what arrived.
* **One call seen twice counts once.** A working-stage span whose nearest stage
  ancestor (the first ancestor that has a stage or opens a run) is a span of the
  **same** stage, and whose time overlaps it, is that stage's call seen by a second
  instrumentation (llmspans' instrumentor and OpenInference, OpenLLMetry or
  openai-v2 stacked on one client; a peer's span inside an ``@llmspans.generation``).
  It is folded into the outer span (:func:`_fold`): the outer span is the one stage
  call, each fact it lacks is taken from the inner one, and the inner span is neither
  a stage call nor part of the run. This is llmspans' own rule for a client call
  inside a decorated stage of the same kind (it enriches the stage instead of
  opening a second span), applied to spans other instrumentations wrote.
* A stage's spans are kept in start-time order, whatever order they arrived in.
* A span seen twice (same trace and span id) counts once; a parent cycle in bad
  input ends the ancestor walk instead of looping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import chain
from operator import attrgetter
from typing import Final

from llmspans import _attributes as A
from llmspans.core.model import Run
from llmspans.core.records import SpanRecord

__all__ = [
    "assemble",
    "pipeline_name",
    "relevant_ids",
    "retrieved_ids",
    "selected_context",
    "unique_ids",
]

_WORKING_STAGES: Final = frozenset(A.PIPELINE_ORDER)
_RUN_OPERATIONS: Final = frozenset({A.OP_INVOKE_WORKFLOW, A.OP_INVOKE_AGENT})
_WORKFLOW_PREFIX: Final = A.OP_INVOKE_WORKFLOW + " "
#: Pipeline name used when a pipeline span carries no name at all.
UNNAMED_PIPELINE: Final = "unknown"

_Key = tuple[bytes, bytes]
#: start time, then span id: a total order, so the result never depends on arrival order
_START_ORDER: Final = attrgetter("start_ns", "span_id")
_ROOT_START_ORDER: Final = attrgetter("root.start_ns", "root.span_id")


def pipeline_name(root: SpanRecord) -> str:
    """The name of the pipeline a root span starts: its ``llmspans.pipeline``, else the
    name in its span name (``invoke_workflow {name}``), else ``"unknown"``."""
    if root.pipeline:
        return root.pipeline
    if root.name.startswith(_WORKFLOW_PREFIX) and len(root.name) > len(_WORKFLOW_PREFIX):
        return root.name[len(_WORKFLOW_PREFIX) :]
    return UNNAMED_PIPELINE


def assemble(
    records: Sequence[SpanRecord],
) -> tuple[list[Run], list[SpanRecord], list[SpanRecord]]:
    """Group records (of one or several traces) into runs.

    Returns ``(runs, standalone, feedback)``: the runs in root start-time order,
    the stage spans that belong to no run, and the feedback spans.
    """
    if len(records) == 1:
        # A trace of one span (a feedback span in a trace of its own, a lone stage
        # span): what the general path below gives, without its bookkeeping.
        (span,) = records
        stage = span.stage
        if stage == A.STAGE_FEEDBACK:
            return [], [], [span]
        if stage == A.STAGE_PIPELINE or (stage is None and span.opens_run):
            return [Run(root=span, pipeline=pipeline_name(span), spans=[span])], [], []
        return [], [span] if stage in _WORKING_STAGES else [], []
    by_key: dict[_Key, SpanRecord] = {}
    for record in records:
        by_key.setdefault((record.trace_id, record.span_id), record)
    spans = sorted(by_key.values(), key=_START_ORDER)

    runs_by_root: dict[_Key, Run] = {}
    runs_per_trace: dict[bytes, list[Run]] = {}
    feedback: list[SpanRecord] = []
    openers: list[SpanRecord] = []
    for span in spans:
        if span.stage == A.STAGE_PIPELINE:
            run = Run(root=span, pipeline=pipeline_name(span), spans=[span])
            runs_by_root[(span.trace_id, span.span_id)] = run
            runs_per_trace.setdefault(span.trace_id, []).append(run)
        elif span.stage == A.STAGE_FEEDBACK:
            feedback.append(span)
        elif span.stage is None and span.operation in _RUN_OPERATIONS:  # span.opens_run
            openers.append(span)
    if openers:
        covered: dict[_Key, bool] = {}
        for span in openers:
            if not _enclosed(span, by_key, covered):
                run = Run(root=span, pipeline=pipeline_name(span), spans=[span])
                runs_by_root[(span.trace_id, span.span_id)] = run
                runs_per_trace.setdefault(span.trace_id, []).append(run)

    # a stage with a second span in a run: the only runs where a call may be seen twice
    repeated: list[Run] = []
    # owner[key] is the run a span belongs to (None: under no pipeline, or unknown).
    owner: dict[_Key, Run | None] = {}
    standalone: list[SpanRecord] = []
    for span in spans:
        stage = span.stage
        if stage in (A.STAGE_PIPELINE, A.STAGE_FEEDBACK):
            continue
        if stage is None and openers and (span.trace_id, span.span_id) in runs_by_root:
            continue  # a run root of another convention
        # The common case first: the parent is a pipeline span (no walk, no memo
        # needed: a walk from a descendant reaches the same run one step later).
        owning = (
            runs_by_root.get((span.trace_id, span.parent_span_id)) if span.parent_span_id else None
        )
        if owning is None:
            owning = _owning_run(span, by_key, runs_by_root, runs_per_trace, owner)
        if owning is None:
            if stage in _WORKING_STAGES:
                standalone.append(span)
            continue
        owning.spans.append(span)
        if stage in _WORKING_STAGES:
            stages = owning.stages
            found = stages.get(stage)
            if found is None:
                stages[stage] = [span]
            else:
                found.append(span)
                repeated.append(owning)

    if repeated or len(standalone) > 1:
        standalone = _fold_stacked(repeated, standalone, by_key, runs_by_root)
    runs = sorted(runs_by_root.values(), key=_ROOT_START_ORDER)
    return runs, standalone, feedback


def _fold_stacked(
    repeated: list[Run],
    standalone: list[SpanRecord],
    by_key: dict[_Key, SpanRecord],
    runs_by_root: dict[_Key, Run],
) -> list[SpanRecord]:
    """Fold the calls seen twice (module docstring) in the runs that have a stage with
    several spans and among the standalone spans; returns the standalone spans left.
    Only reached when a stage repeats, so traces of one span per stage pay nothing."""
    runs = list({id(run): run for run in repeated}.values())
    candidates = [
        span for run in runs for spans in run.stages.values() if len(spans) > 1 for span in spans
    ]
    candidates.extend(standalone)
    candidates.sort(key=_START_ORDER)
    folded = _stacked(candidates, by_key, runs_by_root)
    if folded is None:
        return standalone
    for run in runs:
        for stage, spans in run.stages.items():
            run.stages[stage] = _kept(spans, folded)
        run.spans = _kept(run.spans, folded)
    return _kept(standalone, folded)


def _kept(spans: list[SpanRecord], folded: dict[_Key, SpanRecord | None]) -> list[SpanRecord]:
    """``spans`` with each folded inner span gone and each outer one replaced by its
    folded copy, in the same order."""
    found = (folded.get((span.trace_id, span.span_id), span) for span in spans)
    return [span for span in found if span is not None]


#: The facts an inner span of a call seen twice gives its outer span when the outer
#: span lacks them (None there). Identity, times, status, stage, pipeline, run
#: labels and operation stay the outer span's.
_FOLDED_FACTS: Final = (
    "document_ids",
    "scores",
    "relevant_ids",
    "input_ids",
    "selected_ids",
    "citations",
    "confidence",
    "refused",
    "output_valid",
    "cost_usd",
    "verified",
    "verification",
    "task_completed",
    "task_correct",
    "query",
    "documents_content",
    "input_messages",
    "output_messages",
    "claims",
)


def _stacked(
    spans: Sequence[SpanRecord], by_key: dict[_Key, SpanRecord], runs_by_root: dict[_Key, Run]
) -> dict[_Key, SpanRecord | None] | None:
    """The calls seen twice among ``spans`` (start order): for each folded inner span
    ``None``, for each outer span that took facts its folded copy; ``None`` when
    there is none (decided without a walk when no working stage has two spans, or
    when every stage span's parent is a run root)."""
    candidates = [span for span in spans if span.stage in _WORKING_STAGES]
    if len(candidates) < 2 or len({span.stage for span in candidates}) == len(candidates):
        return None
    # nearest[key]: the nearest ancestor with a stage or a run of its own of the span
    # with that key (memoised for the spans without stage on the way: linear walks)
    nearest: dict[_Key, SpanRecord | None] = {}
    outer_of: dict[_Key, _Key] = {}
    for span in candidates:
        parent_id = span.parent_span_id
        trace_id = span.trace_id
        if not parent_id or (trace_id, parent_id) in runs_by_root:
            continue
        found = _nearest_stage(trace_id, parent_id, by_key, runs_by_root, nearest)
        if (
            found is not None
            and found.stage == span.stage
            and span.start_ns <= found.end_ns
            and found.start_ns <= span.end_ns
        ):
            outer_of[(trace_id, span.span_id)] = (trace_id, found.span_id)
    if not outer_of:
        return None
    # Each inner span goes to its top outer span (three stacked instrumentations make
    # a chain); a cycle in bad input folds nothing.
    # top_of memoises the top of every span on a resolved chain (linear in all).
    top_of: dict[_Key, _Key | None] = {}
    inner_of: dict[_Key, list[SpanRecord]] = {}
    for key, outer in outer_of.items():
        path = [key]
        seen = {key}
        top: _Key | None = outer
        while top is not None and top in outer_of:
            if top in top_of:
                top = top_of[top]
                break
            if top in seen:
                top = None
                break
            seen.add(top)
            path.append(top)
            top = outer_of[top]
        for on_path in path:
            top_of[on_path] = top
        if top is not None:
            inner_of.setdefault(top, []).append(by_key[key])
    folded: dict[_Key, SpanRecord | None] = {}
    for top, inners in inner_of.items():
        merged = _fold(by_key[top], inners)
        folded[top] = merged
        for inner in inners:
            folded[(inner.trace_id, inner.span_id)] = None
    return folded or None


def _nearest_stage(
    trace_id: bytes,
    parent_id: bytes,
    by_key: dict[_Key, SpanRecord],
    runs_by_root: dict[_Key, Run],
    nearest: dict[_Key, SpanRecord | None],
) -> SpanRecord | None:
    """The nearest ancestor (from ``parent_id`` up) with a stage or a run of its own;
    ``None`` when a parent is missing or the input has a cycle."""
    path: list[_Key] = []
    seen: set[_Key] = set()
    result: SpanRecord | None = None
    while parent_id:
        key = (trace_id, parent_id)
        if key in nearest:
            result = nearest[key]
            break
        parent = by_key.get(key)
        if parent is None or key in seen:
            break
        if parent.stage is not None or key in runs_by_root:
            result = parent
            break
        seen.add(key)
        path.append(key)
        parent_id = parent.parent_span_id
    for key in path:
        nearest[key] = result
    return result


def _fold(outer: SpanRecord, inners: Sequence[SpanRecord]) -> SpanRecord:
    """A copy of ``outer`` with each fact it lacks taken from ``inners`` (in start
    order: the nearest instrumentation first). The outer span's status stands: an
    error raised inside reaches the outer span unless the code between handled it,
    and a handled error did not fail the stage (as for llmspans' own instrumentor
    inside a decorated stage); only its ``error.type`` may come from inside."""
    merged = replace(outer)
    for inner in inners:
        for name in _FOLDED_FACTS:
            if getattr(merged, name) is None:
                value = getattr(inner, name)
                if value is not None:
                    setattr(merged, name, value)
        if merged.error and merged.error_type is None and inner.error:
            merged.error_type = inner.error_type
    return merged


def _enclosed(span: SpanRecord, by_key: dict[_Key, SpanRecord], covered: dict[_Key, bool]) -> bool:
    """Whether a pipeline span or a run-opening span is among the ancestors of ``span``.

    ``covered`` memoises, per span, whether it or one of its ancestors opens a run,
    so that the walks of all the spans of a trace stay linear in its spans.
    """
    trace_id = span.trace_id
    path: list[_Key] = []
    seen: set[_Key] = set()
    result = False
    parent_id = span.parent_span_id
    while parent_id:
        key = (trace_id, parent_id)
        known = covered.get(key)
        if known is not None:
            result = known
            break
        parent = by_key.get(key)
        if parent is None or key in seen:
            break
        if parent.stage == A.STAGE_PIPELINE or parent.opens_run:
            covered[key] = result = True
            break
        seen.add(key)
        path.append(key)
        parent_id = parent.parent_span_id
    for key in path:
        covered[key] = result
    return result


def _owning_run(
    span: SpanRecord,
    by_key: dict[_Key, SpanRecord],
    runs_by_root: dict[_Key, Run],
    runs_per_trace: dict[bytes, list[Run]],
    owner: dict[_Key, Run | None],
) -> Run | None:
    """Walk up the parents to the nearest pipeline span; memoised in ``owner``."""
    trace_id = span.trace_id
    path: list[_Key] = []
    seen: set[_Key] = set()
    current = span
    result: Run | None
    while True:
        key = (trace_id, current.span_id)
        if key in owner:
            result = owner[key]
            break
        path.append(key)
        seen.add(key)
        if not current.parent_span_id:
            result = None  # a root that is not a pipeline span: under no run
            break
        parent_key = (trace_id, current.parent_span_id)
        run = runs_by_root.get(parent_key)
        if run is not None:
            result = run
            break
        parent = by_key.get(parent_key)
        if parent is None or parent_key in seen:
            # The parent never arrived (or the input has a cycle): only an
            # unambiguous trace lets us place the span.
            candidates = runs_per_trace.get(trace_id, [])
            result = candidates[0] if len(candidates) == 1 else None
            break
        current = parent
    for key in path:
        owner[key] = result
    return result


# --- facts of a run that several rules and metrics read --------------------------------


def unique_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Ids in first-seen order, without repeats."""
    return tuple(dict.fromkeys(ids))


def _ids_of_spans(
    spans: Sequence[SpanRecord], ids_of: Callable[[SpanRecord], tuple[str, ...] | None]
) -> tuple[str, ...]:
    """The ids ``ids_of`` gives for each span, in order, without repeats (one span, the
    usual case, without a generator step per id)."""
    if len(spans) == 1:
        ids = ids_of(spans[0])
        return tuple(dict.fromkeys(ids)) if ids else ()
    return tuple(dict.fromkeys(chain.from_iterable(ids_of(span) or () for span in spans)))


_DOCUMENT_IDS: Final = attrgetter("document_ids")
_RELEVANT_IDS: Final = attrgetter("relevant_ids")
_CITATIONS: Final = attrgetter("citations")


def retrieved_ids(run: Run) -> tuple[str, ...]:
    """Every document id the run's retrievals returned, in order, without repeats."""
    return _stage_ids(run, "retrieved_ids", A.STAGE_RETRIEVAL, _DOCUMENT_IDS)


def relevant_ids(run: Run) -> tuple[str, ...]:
    """The ground-truth relevant ids recorded on the run's retrievals (labels)."""
    return _stage_ids(run, "relevant_ids", A.STAGE_RETRIEVAL, _RELEVANT_IDS)


def cited_ids(run: Run) -> tuple[str, ...]:
    """Every document id the run's generations cite, in order, without repeats."""
    return _stage_ids(run, "cited_ids", A.STAGE_GENERATION, _CITATIONS)


def _stage_ids(
    run: Run, fact: str, stage: str, ids: Callable[[SpanRecord], tuple[str, ...] | None]
) -> tuple[str, ...]:
    """The ids ``ids`` reads from the run's spans of ``stage``, in order, without
    repeats; derived once per run and kept in ``run.facts[fact]``."""
    facts = run.facts
    if fact not in facts:
        facts[fact] = _ids_of_spans(run.stages.get(stage, ()), ids)
    result: tuple[str, ...] = facts[fact]
    return result


def selected_context(run: Run) -> tuple[str, ...] | None:
    """The ids the model was shown: what context selection put in the prompt.

    A run without a context-selection span that recorded ``selected_ids`` shows the
    model what retrieval returned; a run with neither has no known context (``None``).
    """
    facts = run.facts
    if "selected_context" not in facts:
        facts["selected_context"] = _selected_context(run)
    result: tuple[str, ...] | None = facts["selected_context"]
    return result


def selected_context_set(run: Run) -> frozenset[str] | None:
    """:func:`selected_context` as a set, built once per run: rules and metrics that
    test many citations against it stay linear in the run's ids."""
    facts = run.facts
    if "selected_context_set" not in facts:
        selected = selected_context(run)
        facts["selected_context_set"] = None if selected is None else frozenset(selected)
    result: frozenset[str] | None = facts["selected_context_set"]
    return result


def retrieved_id_set(run: Run) -> frozenset[str]:
    """:func:`retrieved_ids` as a set, built once per run."""
    facts = run.facts
    if "retrieved_id_set" not in facts:
        facts["retrieved_id_set"] = frozenset(retrieved_ids(run))
    result: frozenset[str] = facts["retrieved_id_set"]
    return result


def _selected_context(run: Run) -> tuple[str, ...] | None:
    selections = [
        span.selected_ids
        for span in run.stages.get(A.STAGE_CONTEXT_SELECTION, ())
        if span.selected_ids is not None
    ]
    if selections:
        return tuple(dict.fromkeys(chain.from_iterable(selections)))
    retrievals = [
        span.document_ids
        for span in run.stages.get(A.STAGE_RETRIEVAL, ())
        if span.document_ids is not None
    ]
    if retrievals:
        return tuple(dict.fromkeys(chain.from_iterable(retrievals)))
    return None
