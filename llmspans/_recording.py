"""``record_*`` helpers and ``set_outcome``: facts set explicitly on the current stage.

The decorators read what they can from arguments and return values; these helpers
set the facts the code knows better. What a helper records wins over extraction:
the decorator does not overwrite an attribute a helper has set.

A helper called outside its stage (``record_retrieval`` with no enclosing
``@retrieval``) records nothing and logs one warning on the ``llmspans`` logger;
helpers never raise into the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry.context import get_current

from llmspans import _attributes as A
from llmspans import _content
from llmspans._context import STAGE_KEY, Stage, current_run_span
from llmspans._documents import document_texts, extract_documents
from llmspans._logging import log_internal_error, warn_once
from llmspans._state import STATE
from llmspans.cost import PriceTable, get_price_table


def _active(stage: str, helper: str) -> Stage | None:
    """The current stage when it is a ``stage`` with a recording span, else ``None``."""
    active = get_current().get(STAGE_KEY)  # current_stage(), one lookup
    if not isinstance(active, Stage) or active.stage != stage:
        warn_once(
            f"outside.{helper}",
            f"llmspans.{helper}() was called outside a {stage} stage; nothing was recorded",
        )
        return None
    return active if active.recording and not active.ended else None


def _ids(values: Iterable[object]) -> list[str]:
    return list(map(str, values))


def _floats(values: Iterable[object]) -> list[float]:
    return list(map(float, values))  # type: ignore[arg-type]


def _put_content(updates: dict[str, Any], key: str, value: object) -> None:
    text = _content.prepare_content(value)
    if text is not None:
        updates[key] = text
        if _content.captured_for_evaluation():
            updates[A.EVALUATION_SAMPLED_CONTENT] = True


# --- retrieval ---------------------------------------------------------------
def record_retrieval(
    documents: object = None,
    *,
    document_ids: Sequence[object] | None = None,
    scores: Sequence[float] | None = None,
    relevant_ids: Iterable[object] | None = None,
    query: object = None,
    data_source: str | None = None,
    top_k: int | None = None,
) -> None:
    """Record the current retrieval's documents (ids in rank order), scores and labels.

    ``documents`` is read like a decorated retrieval's return value; explicit
    ``document_ids`` / ``scores`` win. ``relevant_ids`` is ground truth (labelled or
    shadow traffic). ``query`` and document text are content: recorded only when
    content capture is on.
    """
    try:
        active = _active(A.STAGE_RETRIEVAL, "record_retrieval")
        if active is None:
            return
        updates: dict[str, Any] = {}
        if documents is not None:
            extracted = extract_documents(documents)
            if extracted is not None:
                ids, doc_scores = extracted
                if document_ids is None:
                    updates[A.RETRIEVAL_DOCUMENT_IDS] = ids
                if scores is None and doc_scores is not None:
                    updates[A.RETRIEVAL_SCORES] = doc_scores
            if _content.capture_enabled():
                _put_content(updates, A.RETRIEVAL_DOCUMENTS_CONTENT, document_texts(documents))
        if document_ids is not None:
            updates[A.RETRIEVAL_DOCUMENT_IDS] = _ids(document_ids)
        if scores is not None:
            updates[A.RETRIEVAL_SCORES] = _floats(scores)
        if relevant_ids is not None:
            updates[A.RETRIEVAL_RELEVANT_IDS] = _ids(relevant_ids)
        if data_source is not None:
            updates[A.GEN_AI_DATA_SOURCE_ID] = data_source
        if top_k is not None:
            updates[A.GEN_AI_REQUEST_TOP_K] = int(top_k)
        if query is not None:
            _put_content(updates, A.RETRIEVAL_QUERY, query)
        active.record(updates)
    except Exception as exc:
        log_internal_error("record_retrieval", exc)


# --- context selection ---------------------------------------------------------
def record_context(
    selected: object = None,
    *,
    candidates: object = None,
    input_ids: Iterable[object] | None = None,
    selected_ids: Iterable[object] | None = None,
    token_budget: int | None = None,
    tokens: int | None = None,
) -> None:
    """Record the current context selection: candidates offered and ids placed in the prompt.

    ``candidates`` and ``selected`` are documents (read like a retrieval's result);
    ``input_ids`` / ``selected_ids`` set the ids directly and win.
    """
    try:
        active = _active(A.STAGE_CONTEXT_SELECTION, "record_context")
        if active is None:
            return
        updates: dict[str, Any] = {}
        if candidates is not None and input_ids is None:
            extracted = extract_documents(candidates)
            if extracted is not None:
                updates[A.CONTEXT_INPUT_IDS] = extracted[0]
        if selected is not None and selected_ids is None:
            extracted = extract_documents(selected)
            if extracted is not None:
                updates[A.CONTEXT_SELECTED_IDS] = extracted[0]
        if input_ids is not None:
            updates[A.CONTEXT_INPUT_IDS] = _ids(input_ids)
        if selected_ids is not None:
            updates[A.CONTEXT_SELECTED_IDS] = _ids(selected_ids)
        if token_budget is not None:
            updates[A.CONTEXT_TOKEN_BUDGET] = int(token_budget)
        if tokens is not None:
            updates[A.CONTEXT_TOKENS] = int(tokens)
        active.record(updates)
    except Exception as exc:
        log_internal_error("record_context", exc)


# --- generation -------------------------------------------------------------------
def _probability(value: float, name: str) -> float | None:
    number = float(value)
    if math.isfinite(number) and 0.0 <= number <= 1.0:
        return number
    warn_once(f"range.{name}", f"llmspans: {name} must be in [0, 1], got {value!r}; not recorded")
    return None


def record_generation(
    *,
    model: str | None = None,
    response_model: str | None = None,
    provider: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
    citations: Iterable[object] | None = None,
    confidence: float | None = None,
    refused: bool | None = None,
    output_valid: bool | None = None,
    cost_usd: float | None = None,
    finish_reasons: Sequence[str] | None = None,
    response_id: str | None = None,
    prompt: object = None,
    completion: object = None,
    claims: Mapping[object, object] | None = None,
) -> None:
    """Record facts of the current generation.

    Token counts follow the GenAI conventions: ``input_tokens`` counts all input
    tokens, cached ones included. When the model and the input tokens are known,
    ``llmspans.cost.usd`` is computed from the price table (an explicit
    ``cost_usd`` wins). Values replace earlier ones. ``confidence`` must be in [0, 1].
    ``prompt`` and ``completion`` are content: recorded only when capture is on (or
    the run is sampled for evaluation). So are ``claims``, each cited document id
    with the claim it is cited for (``{"doc-7": "refunds take 5 days"}``), which an
    evaluation judge checks against the document (``llmspans.generation.claims``).
    """
    try:
        # _active(), written out: this helper runs on every generation
        active = get_current().get(STAGE_KEY)
        if not isinstance(active, Stage) or active.stage != A.STAGE_GENERATION:
            _active(A.STAGE_GENERATION, "record_generation")  # warns once
            return
        if not active.recording or active.ended:
            return
        facts: dict[str, Any] = {}
        if model is not None:
            facts[A.GEN_AI_REQUEST_MODEL] = model
            if active.rename_prefix is not None:
                active.rename(model)
        # The model called, token counts and citations inline: the common call of this
        # helper, on every generation; the rarer facts in a call of their own.
        if response_model is not None:
            facts[A.GEN_AI_RESPONSE_MODEL] = response_model
        if provider is not None or finish_reasons is not None or response_id is not None:
            _put_response_facts(facts, provider, finish_reasons, response_id)
        if input_tokens is not None:
            facts[A.GEN_AI_USAGE_INPUT_TOKENS] = int(input_tokens)
        if output_tokens is not None:
            facts[A.GEN_AI_USAGE_OUTPUT_TOKENS] = int(output_tokens)
        if cache_read_input_tokens is not None:
            facts[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = int(cache_read_input_tokens)
        if cache_creation_input_tokens is not None:
            facts[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = int(cache_creation_input_tokens)
        if citations is not None:
            facts[A.GENERATION_CITATIONS] = list(map(str, citations))  # _ids(), inline
        if confidence is not None or refused is not None or output_valid is not None:
            _put_answer_facts(facts, confidence, refused, output_valid)
        if prompt is not None:
            _put_content(facts, A.GEN_AI_INPUT_MESSAGES, prompt)
        if completion is not None:
            _put_content(facts, A.GEN_AI_OUTPUT_MESSAGES, completion)
        if claims is not None:
            _put_content(
                facts, A.GENERATION_CLAIMS, {str(key): str(value) for key, value in claims.items()}
            )
        # The cost: explicit, or computed from this call's facts with earlier ones.
        recorded = active.recorded
        if cost_usd is not None:
            facts[A.COST_USD] = float(cost_usd)
            recorded.pop(_COMPUTED, None)
        elif not _COST_INPUTS.isdisjoint(facts):
            recorded.update(facts)
            cost = computed_cost(recorded)
            if cost is not None:
                facts[A.COST_USD] = cost
                recorded[_COMPUTED] = True
                recorded[A.COST_USD] = cost
            if active.deferred and facts:
                # Stage.record(facts) with ``recorded`` already updated: the common
                # call, a decorated generation's, without the second update
                active.pending.update(facts)
                return
        active.record(facts)
    except Exception as exc:
        log_internal_error("record_generation", exc)


def _put_response_facts(
    facts: dict[str, Any],
    provider: str | None,
    finish_reasons: Sequence[str] | None,
    response_id: str | None,
) -> None:
    if provider is not None:
        facts[A.GEN_AI_PROVIDER_NAME] = provider
    if finish_reasons is not None:
        facts[A.GEN_AI_RESPONSE_FINISH_REASONS] = [str(r) for r in finish_reasons]
    if response_id is not None:
        facts[A.GEN_AI_RESPONSE_ID] = response_id


def _put_answer_facts(
    facts: dict[str, Any],
    confidence: float | None,
    refused: bool | None,
    output_valid: bool | None,
) -> None:
    if confidence is not None:
        checked = _probability(confidence, "confidence")
        if checked is not None:
            facts[A.GENERATION_CONFIDENCE] = checked
    if refused is not None:
        facts[A.GENERATION_REFUSED] = bool(refused)
    if output_valid is not None:
        facts[A.GENERATION_OUTPUT_VALID] = bool(output_valid)


def computed_cost(recorded: Mapping[str, object]) -> float | None:
    """The cost from the recorded model and tokens; ``None`` when set explicitly or unknown."""
    if A.COST_USD in recorded and _COMPUTED not in recorded:
        return None
    # One C-level pass for the six facts the cost reads; the tuple is also the memo key.
    facts = tuple(map(recorded.get, _COST_FACTS))
    if not isinstance(facts[0], int):
        return None
    table = STATE.price_table
    if table is None:
        table = get_price_table()
    # The same facts give the same cost: remembered in STATE.costs with the table
    # they were priced with (a cost from another table is recomputed), which skips
    # the lookups and arithmetic on every call.
    costs = STATE.costs
    try:
        memo = costs.get(facts)
    except TypeError:  # a value that cannot be a key: no memo
        return _cost_from_table(table, facts)
    if memo is not None and memo[0] is table:
        return memo[1]
    cost = _cost_from_table(table, facts)
    if len(costs) >= _COSTS_SIZE:
        costs.clear()
    costs[facts] = (table, cost)
    return cost


def _cost_from_table(table: PriceTable, facts: tuple[object, ...]) -> float | None:
    input_tokens, output_tokens, cache_read, cache_creation, *models = facts
    assert isinstance(input_tokens, int)
    for model in models:
        if not isinstance(model, str):
            continue
        cost = table.cost(
            model,
            input_tokens,
            output_tokens if isinstance(output_tokens, int) else 0,
            cache_read_input_tokens=cache_read if isinstance(cache_read, int) else 0,
            cache_creation_input_tokens=cache_creation if isinstance(cache_creation, int) else 0,
        )
        if cost is not None:
            return cost
    return None


# Entries of STATE.costs: the facts of _COST_FACTS -> (the table used, the cost).
_COSTS_SIZE: Final = 4096

# What the cost depends on: a change of any of these recomputes it.
_COST_INPUTS: Final = frozenset(
    {
        A.GEN_AI_REQUEST_MODEL,
        A.GEN_AI_RESPONSE_MODEL,
        A.GEN_AI_USAGE_INPUT_TOKENS,
        A.GEN_AI_USAGE_OUTPUT_TOKENS,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    }
)

# What computed_cost reads, in this order: tokens (input, output, cache read, cache
# creation), then the models it tries (the one that answered first).
_COST_FACTS: Final = (
    A.GEN_AI_USAGE_INPUT_TOKENS,
    A.GEN_AI_USAGE_OUTPUT_TOKENS,
    A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    A.GEN_AI_RESPONSE_MODEL,
    A.GEN_AI_REQUEST_MODEL,
)

# Marks the cost in ``recorded`` as computed from tokens (recomputed when they change),
# as opposed to set explicitly with ``cost_usd=`` (never overwritten).
_COMPUTED = "llmspans._cost_computed"


# Built-in result types that carry no usage (exact types: a subclass may add one).
_PLAIN: Final = frozenset({str, bytes, int, float, bool, list, tuple, type(None)})


def usage_from_response(result: object) -> dict[str, Any] | None:
    """Token usage and response model from an OpenAI- or Anthropic-style response object."""
    if type(result) in _PLAIN:  # a plain text or list result: no usage, and no lookups
        return None
    usage = result.get("usage") if isinstance(result, Mapping) else getattr(result, "usage", None)
    if usage is None:
        return None

    def read(*names: str) -> int | None:
        for name in names:
            value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    facts: dict[str, Any] = {
        "input_tokens": read("input_tokens", "prompt_tokens"),
        "output_tokens": read("output_tokens", "completion_tokens"),
    }
    model = result.get("model") if isinstance(result, Mapping) else getattr(result, "model", None)
    if isinstance(model, str):
        facts["response_model"] = model
    return facts if facts["input_tokens"] is not None else None


# --- action -------------------------------------------------------------------
def record_action(
    *,
    verified: bool | None = None,
    verification: str | None = None,
    tool_name: str | None = None,
    arguments: object = None,
    result: object = None,
) -> None:
    """Record the current action's verification (execution-based check of downstream state).

    An explicit ``verified`` wins over the decorator's ``verify`` callback.
    ``arguments`` and ``result`` are content: recorded only when capture is on.
    """
    try:
        active = _active(A.STAGE_ACTION, "record_action")
        if active is None:
            return
        updates: dict[str, Any] = {}
        if verified is not None:
            updates[A.ACTION_VERIFIED] = bool(verified)
        if verification is not None:
            updates[A.ACTION_VERIFICATION] = str(verification)
        if tool_name is not None:
            updates[A.GEN_AI_TOOL_NAME] = tool_name
        if arguments is not None:
            _put_content(updates, A.GEN_AI_TOOL_CALL_ARGUMENTS, arguments)
        if result is not None:
            _put_content(updates, A.GEN_AI_TOOL_CALL_RESULT, result)
        active.record(updates)
    except Exception as exc:
        log_internal_error("record_action", exc)


# --- pipeline outcome -------------------------------------------------------------
def set_outcome(*, completed: bool | None = None, correct: bool | None = None) -> None:
    """Record the outcome of the current pipeline run on its root span.

    ``completed``: the app's own verdict on the task (``llmspans.task.completed``).
    ``correct``: ground truth where known (``llmspans.task.correct``, for calibration).
    """
    try:
        span = current_run_span(get_current())
        if span is None:
            warn_once(
                "outside.set_outcome",
                "llmspans.set_outcome() was called outside a pipeline; nothing was recorded",
            )
            return
        if not span.is_recording():
            return
        updates: dict[str, Any] = {}
        if completed is not None:
            updates[A.TASK_COMPLETED] = bool(completed)
        if correct is not None:
            updates[A.TASK_CORRECT] = bool(correct)
        if updates:
            span.set_attributes(updates)
    except Exception as exc:
        log_internal_error("set_outcome", exc)
