"""record_* helpers, set_outcome, action verification, usage and cost on generation spans."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

import llmspans
from llmspans import _attributes as A
from llmspans.testing import CapturedSpans


def test_record_retrieval_wins_over_extraction(spans: CapturedSpans) -> None:
    @llmspans.retrieval(data_source="faq")
    def search() -> list[dict[str, object]]:
        llmspans.record_retrieval(
            document_ids=["x", "y"], scores=[0.3, 0.2], relevant_ids=["y", "z"], top_k=2
        )
        return [{"id": "ignored", "score": 1.0}]

    search()
    attributes = spans.attributes("retrieval faq")
    assert attributes[A.RETRIEVAL_DOCUMENT_IDS] == ("x", "y")
    assert attributes[A.RETRIEVAL_SCORES] == (0.3, 0.2)
    assert attributes[A.RETRIEVAL_RELEVANT_IDS] == ("y", "z")
    assert attributes[A.GEN_AI_REQUEST_TOP_K] == 2


def test_record_retrieval_reads_documents_and_keeps_extracted_scores(
    spans: CapturedSpans,
) -> None:
    @llmspans.retrieval(data_source="faq")
    def search() -> object:
        llmspans.record_retrieval([{"id": "a", "score": 0.5}], relevant_ids={"a"})
        return object()  # nothing readable: the recorded documents stand

    search()
    attributes = spans.attributes("retrieval faq")
    assert attributes[A.RETRIEVAL_DOCUMENT_IDS] == ("a",)
    assert attributes[A.RETRIEVAL_SCORES] == (0.5,)
    assert attributes[A.RETRIEVAL_RELEVANT_IDS] == ("a",)


def test_record_context(spans: CapturedSpans) -> None:
    @llmspans.context_selection(name="pack")
    def pack(question: str, pool: object) -> str:
        llmspans.record_context(
            candidates=[{"id": "a"}, {"id": "b"}], selected_ids=["b"], token_budget=500, tokens=321
        )
        return "prompt text"

    pack("q", object())
    attributes = spans.attributes("context_selection pack")
    assert attributes[A.CONTEXT_INPUT_IDS] == ("a", "b")
    assert attributes[A.CONTEXT_SELECTED_IDS] == ("b",)
    assert attributes[A.CONTEXT_TOKEN_BUDGET] == 500
    assert attributes[A.CONTEXT_TOKENS] == 321


def test_context_selection_reads_first_document_argument(spans: CapturedSpans) -> None:
    @llmspans.context_selection
    def rerank(question: str, docs: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
        return docs[-limit:]

    rerank("which?", [{"id": "a"}, {"id": "b"}, {"id": "c"}], 2)
    rerank("which?", docs=[{"id": "k"}], limit=1)
    first, second = spans.by_name("context_selection rerank")
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes[A.CONTEXT_INPUT_IDS] == ("a", "b", "c")
    assert first.attributes[A.CONTEXT_SELECTED_IDS] == ("b", "c")
    assert second.attributes[A.CONTEXT_INPUT_IDS] == ("k",)


def test_record_generation_and_cost(spans: CapturedSpans) -> None:
    @llmspans.generation(model="gpt-4o-mini", provider="openai")
    def answer() -> str:
        llmspans.record_generation(
            input_tokens=812,
            output_tokens=95,
            citations=["doc-7"],
            confidence=0.82,
            refused=False,
            output_valid=True,
            finish_reasons=["stop"],
            response_id="resp-1",
        )
        return "ok"

    answer()
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 812
    assert attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 95
    assert attributes[A.GENERATION_CITATIONS] == ("doc-7",)
    assert attributes[A.GENERATION_CONFIDENCE] == 0.82
    assert attributes[A.GENERATION_REFUSED] is False
    assert attributes[A.GENERATION_OUTPUT_VALID] is True
    assert attributes[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[A.GEN_AI_RESPONSE_ID] == "resp-1"
    # gpt-4o-mini: 0.15 USD in, 0.60 USD out per million tokens.
    assert attributes[A.COST_USD] == pytest.approx(812 * 0.15e-6 + 95 * 0.60e-6)


def test_cost_recomputed_as_tokens_arrive_and_explicit_cost_wins(spans: CapturedSpans) -> None:
    @llmspans.generation(model="claude-3-5-sonnet-20241022")
    def streamed() -> None:
        llmspans.record_generation(input_tokens=1000)
        llmspans.record_generation(output_tokens=200, cache_read_input_tokens=400)

    @llmspans.generation(model="gpt-4o")
    def priced() -> None:
        llmspans.record_generation(cost_usd=0.5)
        llmspans.record_generation(input_tokens=10, output_tokens=10)

    @llmspans.generation(model="my-private-model")
    def unknown() -> None:
        llmspans.record_generation(input_tokens=10, output_tokens=10)

    streamed()
    priced()
    unknown()
    expected = (600 * 3.0 + 400 * 0.30 + 200 * 15.0) * 1e-6
    assert spans.attributes("chat claude-3-5-sonnet-20241022")[A.COST_USD] == pytest.approx(
        expected
    )
    assert spans.attributes("chat gpt-4o")[A.COST_USD] == 0.5
    assert A.COST_USD not in spans.attributes("chat my-private-model")


def test_usage_read_from_openai_style_response(spans: CapturedSpans) -> None:
    response = SimpleNamespace(
        model="gpt-4o-mini-2024-07-18",
        usage=SimpleNamespace(prompt_tokens=100, completion_tokens=20),
    )

    @llmspans.generation(model="gpt-4o-mini")
    async def answer() -> SimpleNamespace:
        return response

    @llmspans.generation(model="claude-3-5-haiku")
    def anthropic_style() -> dict[str, object]:
        return {
            "model": "claude-3-5-haiku-20241022",
            "usage": {"input_tokens": 7, "output_tokens": 3},
        }

    assert asyncio.run(answer()) is response
    anthropic_style()
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 20
    assert attributes[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[A.COST_USD] == pytest.approx(100 * 0.15e-6 + 20 * 0.6e-6)
    other = spans.attributes("chat claude-3-5-haiku")
    assert other[A.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert other[A.COST_USD] == pytest.approx(7 * 0.8e-6 + 3 * 4e-6)


def test_invalid_confidence_is_not_recorded(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    @llmspans.generation(model="m")
    def answer() -> None:
        llmspans.record_generation(confidence=1.7)
        llmspans.record_generation(confidence=float("nan"))

    with caplog.at_level(logging.WARNING, logger="llmspans"):
        answer()
    assert A.GENERATION_CONFIDENCE not in spans.attributes("chat m")
    assert sum("confidence" in r.getMessage() for r in caplog.records) == 1


def test_helpers_outside_their_stage_warn_once_and_record_nothing(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    @llmspans.retrieval(data_source="faq")
    def search() -> list[str]:
        llmspans.record_generation(input_tokens=5)
        llmspans.record_generation(input_tokens=6)
        return ["a"]

    with caplog.at_level(logging.WARNING, logger="llmspans"):
        search()
        llmspans.record_action(verified=True)
        llmspans.set_outcome(completed=True)
    attributes = spans.attributes("retrieval faq")
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in attributes
    messages = [r.getMessage() for r in caplog.records]
    assert sum("record_generation" in m for m in messages) == 1
    assert sum("record_action" in m for m in messages) == 1
    assert sum("set_outcome" in m for m in messages) == 1


def test_set_outcome_on_the_pipeline_root_from_a_nested_stage(spans: CapturedSpans) -> None:
    @llmspans.action(name="book")
    def book() -> None:
        llmspans.set_outcome(completed=False)

    @llmspans.pipeline("p")
    def run() -> None:
        book()
        llmspans.set_outcome(correct=True)

    run()
    root = spans.attributes("invoke_workflow p")
    assert root[A.TASK_COMPLETED] is False
    assert root[A.TASK_CORRECT] is True
    assert A.TASK_COMPLETED not in spans.attributes("execute_tool book")


# --- action verification --------------------------------------------------------------------
def test_verify_true_false_reason_and_arguments(spans: CapturedSpans) -> None:
    calls: list[tuple[object, tuple[object, ...], dict[str, object]]] = []

    def verify(result: object, *args: object, **kwargs: object) -> bool:
        calls.append((result, args, kwargs))
        return True

    @llmspans.action(name="ok", verify=verify)
    def ok(x: int, *, flag: bool) -> int:
        return x + 1

    @llmspans.action(name="missing", verify=lambda result, *a, **k: (False, "row not found"))
    def missing() -> str:
        return "id-9"

    assert ok(1, flag=True) == 2
    assert missing() == "id-9"
    assert calls == [(2, (1,), {"flag": True})]
    assert spans.attributes("execute_tool ok")[A.ACTION_VERIFIED] is True
    assert A.ACTION_VERIFICATION not in spans.attributes("execute_tool ok")
    failed = spans.attributes("execute_tool missing")
    assert failed[A.ACTION_VERIFIED] is False
    assert failed[A.ACTION_VERIFICATION] == "row not found"


def test_verify_that_raises_records_failure_and_keeps_the_result(spans: CapturedSpans) -> None:
    def verify(result: object) -> bool:
        raise ConnectionError("db down")

    @llmspans.action(name="book", verify=verify)
    def book() -> str:
        return "booking-1"

    assert book() == "booking-1"
    attributes = spans.attributes("execute_tool book")
    assert attributes[A.ACTION_VERIFIED] is False
    assert attributes[A.ACTION_VERIFICATION] == "verify raised ConnectionError: db down"
    assert spans.one("execute_tool book").status.is_ok


def test_async_verify_and_explicit_record_wins(spans: CapturedSpans) -> None:
    async def verify(result: object) -> tuple[bool, str]:
        await asyncio.sleep(0)
        return False, "not yet visible"

    @llmspans.action(name="async_book", verify=verify)
    async def book() -> str:
        return "b"

    never: list[object] = []

    @llmspans.action(name="explicit", verify=lambda r: never.append(r) or True)
    def explicit() -> None:
        llmspans.record_action(verified=False, verification="checked by hand")

    assert asyncio.run(book()) == "b"
    explicit()
    assert spans.attributes("execute_tool async_book")[A.ACTION_VERIFICATION] == "not yet visible"
    attributes = spans.attributes("execute_tool explicit")
    assert attributes[A.ACTION_VERIFIED] is False
    assert attributes[A.ACTION_VERIFICATION] == "checked by hand"
    assert never == []


def test_verify_not_called_when_the_action_raises(spans: CapturedSpans) -> None:
    called: list[object] = []

    @llmspans.action(name="fails", verify=lambda r: called.append(r) or True)
    def fails() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        fails()
    assert called == []
    assert A.ACTION_VERIFIED not in spans.attributes("execute_tool fails")
