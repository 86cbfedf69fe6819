"""Stage decorators on every callable shape: exact spans, context, errors, iteration."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import traceback

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import llmspans
from llmspans import _attributes as A
from llmspans._context import Stage, current_pipeline, current_stage, enclosing_stage
from llmspans._state import STATE
from llmspans.instrumentation._base import Request, StageCall
from llmspans.testing import CapturedSpans


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


# --- names, kinds, operation names, attributes (SPEC section 2) ----------------------------
def test_every_stage_span_has_the_spec_name_kind_and_attributes(spans: CapturedSpans) -> None:
    @llmspans.retrieval(data_source="faq", top_k=3)
    def search(query: str) -> list[dict[str, object]]:
        return [{"id": "d1", "score": 0.9}]

    @llmspans.context_selection(name="pack", token_budget=1000)
    def select(docs: list[dict[str, object]]) -> list[dict[str, object]]:
        return docs

    @llmspans.generation(model="gpt-4o-mini", provider="openai")
    def answer(question: str) -> str:
        return "ok"

    @llmspans.generation(model="davinci-002", operation="text_completion")
    def complete(prompt: str) -> str:
        return "ok"

    @llmspans.action(name="book_table")
    def book() -> int:
        return 1

    @llmspans.pipeline("support_answer")
    def handle() -> None:
        select(search("q"))
        answer("q")
        complete("q")
        book()

    handle()
    root = spans.one("invoke_workflow support_answer")
    assert root.kind is SpanKind.INTERNAL
    assert root.parent is None
    assert dict(root.attributes or {}) == {
        A.STAGE: "pipeline",
        A.GEN_AI_OPERATION_NAME: "invoke_workflow",
        A.PIPELINE: "support_answer",
    }
    expected = {
        "retrieval faq": (
            SpanKind.CLIENT,
            {
                A.STAGE: "retrieval",
                A.GEN_AI_OPERATION_NAME: "retrieval",
                A.GEN_AI_DATA_SOURCE_ID: "faq",
                A.GEN_AI_REQUEST_TOP_K: 3,
                A.PIPELINE: "support_answer",
                A.RETRIEVAL_DOCUMENT_IDS: ("d1",),
                A.RETRIEVAL_SCORES: (0.9,),
            },
        ),
        "context_selection pack": (
            SpanKind.INTERNAL,
            {
                A.STAGE: "context_selection",
                A.CONTEXT_TOKEN_BUDGET: 1000,
                A.PIPELINE: "support_answer",
                A.CONTEXT_INPUT_IDS: ("d1",),
                A.CONTEXT_SELECTED_IDS: ("d1",),
            },
        ),
        "chat gpt-4o-mini": (
            SpanKind.CLIENT,
            {
                A.STAGE: "generation",
                A.GEN_AI_OPERATION_NAME: "chat",
                A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                A.GEN_AI_PROVIDER_NAME: "openai",
                A.PIPELINE: "support_answer",
            },
        ),
        "text_completion davinci-002": (
            SpanKind.CLIENT,
            {
                A.STAGE: "generation",
                A.GEN_AI_OPERATION_NAME: "text_completion",
                A.GEN_AI_REQUEST_MODEL: "davinci-002",
                A.PIPELINE: "support_answer",
            },
        ),
        "execute_tool book_table": (
            SpanKind.INTERNAL,
            {
                A.STAGE: "action",
                A.GEN_AI_OPERATION_NAME: "execute_tool",
                A.GEN_AI_TOOL_NAME: "book_table",
                A.PIPELINE: "support_answer",
            },
        ),
    }
    assert sorted(spans.names()) == sorted([*expected, "invoke_workflow support_answer"])
    for name, (kind, attributes) in expected.items():
        span = spans.one(name)
        assert span.kind is kind, name
        assert dict(span.attributes or {}) == attributes, name
        assert parent_id(span) == span_id(root), name
        assert span.context is not None and root.context is not None
        assert span.context.trace_id == root.context.trace_id
        assert span.status.status_code is StatusCode.UNSET


def test_bare_decorators_use_the_function_name(spans: CapturedSpans) -> None:
    @llmspans.retrieval
    def search() -> list[str]:
        return []

    @llmspans.context_selection
    def pack() -> list[str]:
        return []

    @llmspans.action
    def send_mail() -> None:
        return None

    @llmspans.generation
    def write() -> str:
        return ""

    @llmspans.pipeline
    def flow() -> None:
        search()
        pack()
        send_mail()
        write()

    flow()
    assert spans.names() == [
        "retrieval search",
        "context_selection pack",
        "execute_tool send_mail",
        "chat",
        "invoke_workflow flow",
    ]
    assert spans.attributes("execute_tool send_mail")[A.GEN_AI_TOOL_NAME] == "send_mail"
    assert A.GEN_AI_DATA_SOURCE_ID not in spans.attributes("retrieval search")
    # An empty result is a fact: no documents.
    assert spans.attributes("retrieval search")[A.RETRIEVAL_DOCUMENT_IDS] == ()


def test_positional_detail_and_keyword_forms(spans: CapturedSpans) -> None:
    @llmspans.retrieval("kb")
    def a() -> None: ...

    @llmspans.generation("claude-sonnet-4", provider="anthropic")
    def b() -> None: ...

    @llmspans.action("refund")
    def c() -> None: ...

    @llmspans.context_selection("rerank")
    def d() -> None: ...

    @llmspans.pipeline(name="named")
    def e() -> None:
        a()
        b()
        c()
        d()

    e()
    assert spans.names() == [
        "retrieval kb",
        "chat claude-sonnet-4",
        "execute_tool refund",
        "context_selection rerank",
        "invoke_workflow named",
    ]


def test_stage_outside_a_pipeline_has_no_pipeline_attribute(spans: CapturedSpans) -> None:
    @llmspans.retrieval(data_source="faq")
    def search() -> list[str]:
        return ["d1"]

    search()
    attributes = spans.attributes("retrieval faq")
    assert A.PIPELINE not in attributes
    assert spans.one("retrieval faq").parent is None


def test_generation_without_model_is_renamed_when_the_model_is_recorded(
    spans: CapturedSpans,
) -> None:
    @llmspans.generation
    def answer() -> str:
        llmspans.record_generation(model="gpt-4o", input_tokens=10, output_tokens=1)
        return "x"

    answer()
    span = spans.one("chat gpt-4o")
    assert span.attributes is not None
    assert span.attributes[A.GEN_AI_REQUEST_MODEL] == "gpt-4o"


def test_invalid_generation_operation_is_rejected_at_decoration() -> None:
    with pytest.raises(ValueError, match="operation"):
        llmspans.generation(operation="embeddings")


# --- context keys for auto-instrumentors --------------------------------------------------
def test_decorators_put_pipeline_and_stage_into_the_context(spans: CapturedSpans) -> None:
    seen: dict[str, object] = {}

    @llmspans.generation(model="m")
    def answer() -> None:
        active = current_stage()
        assert active is not None
        seen["stage"] = active.stage
        seen["pipeline"] = current_pipeline()
        seen["span"] = active.span
        seen["enclosing"] = enclosing_stage("generation")
        seen["other"] = enclosing_stage("retrieval")
        seen["current"] = trace.get_current_span()

    @llmspans.pipeline("p")
    def run() -> None:
        assert current_pipeline() == "p"
        stage = current_stage()
        assert stage is not None and stage.stage == "pipeline"
        answer()
        after = current_stage()
        assert after is not None and after.stage == "pipeline"

    run()
    assert seen["stage"] == "generation"
    assert seen["pipeline"] == "p"
    enclosing = seen["enclosing"]
    assert isinstance(enclosing, Stage) and enclosing.stage == "generation"
    assert enclosing.span is seen["span"] is seen["current"]
    assert seen["other"] is None
    assert current_stage() is None
    assert current_pipeline() is None


def test_nested_pipeline_names_its_own_stages(spans: CapturedSpans) -> None:
    @llmspans.action
    def act() -> None: ...

    @llmspans.pipeline("inner")
    def inner() -> None:
        act()

    @llmspans.pipeline("outer")
    def outer() -> None:
        inner()
        act()

    outer()
    acts = spans.by_name("execute_tool act")
    assert [dict(s.attributes or {})[A.PIPELINE] for s in acts] == ["inner", "outer"]


# --- metadata preserved ---------------------------------------------------------------
def test_signature_name_doc_wrapped_and_inspect_are_preserved() -> None:
    def plain(a: int, b: str = "x") -> str:
        """Plain doc."""
        return b * a

    async def coro(a: int) -> int:
        """Coro doc."""
        return a

    def gen(n: int):
        yield n

    async def agen(n: int):
        yield n

    for original, decorated in [
        (plain, llmspans.retrieval(plain)),
        (plain, llmspans.action(name="x")(plain)),
        (coro, llmspans.generation(model="m")(coro)),
        (gen, llmspans.context_selection(gen)),
        (agen, llmspans.pipeline("p")(agen)),
    ]:
        assert decorated.__name__ == original.__name__
        assert decorated.__qualname__ == original.__qualname__
        assert decorated.__doc__ == original.__doc__
        assert decorated.__wrapped__ is original
        assert inspect.signature(decorated) == inspect.signature(original)
        for predicate in (
            inspect.iscoroutinefunction,
            inspect.isgeneratorfunction,
            inspect.isasyncgenfunction,
            inspect.isfunction,
        ):
            assert predicate(decorated) == predicate(original), (original, predicate)
        assert asyncio.iscoroutinefunction(decorated) == asyncio.iscoroutinefunction(original)


# --- methods ---------------------------------------------------------------------------------
class Store:
    def __init__(self) -> None:
        self.docs = [{"id": "a", "score": 1.0}, {"id": "b", "score": 0.5}]

    @llmspans.retrieval(data_source="store")
    def search(self, query: str) -> list[dict[str, object]]:
        return self.docs

    @classmethod
    @llmspans.retrieval(data_source="cls_inner")
    def from_class(cls, query: str) -> list[str]:
        return [f"{cls.__name__}-1"]

    @llmspans.retrieval(data_source="cls_outer")
    @classmethod
    def from_class_outer(cls, query: str) -> list[str]:
        return [f"{cls.__name__}-2"]

    @staticmethod
    @llmspans.action(name="static_inner")
    def helper(x: int) -> int:
        return x + 1

    @llmspans.action(name="static_outer")
    @staticmethod
    def helper_outer(x: int) -> int:
        return x + 2

    @llmspans.generation(model="m")
    async def ask(self, question: str) -> str:
        return question.upper()


def test_methods_classmethods_and_staticmethods(spans: CapturedSpans) -> None:
    store = Store()
    assert store.search("q") == store.docs
    assert Store.search(store, "q") == store.docs
    assert Store.from_class("q") == ["Store-1"]
    assert store.from_class_outer("q") == ["Store-2"]
    assert Store.helper(1) == 2
    assert store.helper_outer(1) == 3
    assert asyncio.run(store.ask("hi")) == "HI"
    assert spans.names() == [
        "retrieval store",
        "retrieval store",
        "retrieval cls_inner",
        "retrieval cls_outer",
        "execute_tool static_inner",
        "execute_tool static_outer",
        "chat m",
    ]
    # ``self`` is not taken for a document list, the method's result is.
    assert spans.by_name("retrieval store")[0].attributes[A.RETRIEVAL_DOCUMENT_IDS] == ("a", "b")
    assert spans.attributes("retrieval cls_outer")[A.RETRIEVAL_DOCUMENT_IDS] == ("Store-2",)
    assert inspect.iscoroutinefunction(Store.ask)
    assert inspect.signature(Store.search) == inspect.signature(Store.search.__wrapped__)


# --- errors ---------------------------------------------------------------------------------
class BookingError(Exception):
    pass


def _assert_error_span(span: ReadableSpan, error: BaseException) -> None:
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"{type(error).__name__}: {error}"
    assert (span.attributes or {})[A.ERROR_TYPE] == type(error).__qualname__
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) == 1
    assert (events[0].attributes or {})["exception.type"].endswith(type(error).__name__)
    assert (events[0].attributes or {})["exception.message"] == str(error)


def test_sync_exception_propagates_unchanged(spans: CapturedSpans) -> None:
    raised: list[BaseException] = []

    @llmspans.action(name="book")
    def book() -> None:
        error = BookingError("no table")
        raised.append(error)
        raise error

    @llmspans.pipeline("p")
    def run() -> None:
        book()

    with pytest.raises(BookingError) as caught:
        run()
    assert caught.value is raised[0]
    # The traceback still ends at the line that raised it, in the user's function.
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert frames[-1].name == "book"
    assert frames[-1].line == "raise error"
    _assert_error_span(spans.one("execute_tool book"), caught.value)
    _assert_error_span(spans.one("invoke_workflow p"), caught.value)


async def test_async_exception_propagates_unchanged(spans: CapturedSpans) -> None:
    error = BookingError("late")

    @llmspans.generation(model="m")
    async def answer() -> None:
        await asyncio.sleep(0)
        raise error

    with pytest.raises(BookingError) as caught:
        await answer()
    assert caught.value is error
    assert traceback.extract_tb(error.__traceback__)[-1].line == "raise error"
    _assert_error_span(spans.one("chat m"), error)


def test_generator_exception_propagates_unchanged(spans: CapturedSpans) -> None:
    error = KeyError("missing")

    @llmspans.retrieval(data_source="s")
    def stream():
        yield "d1"
        raise error

    items = []
    with pytest.raises(KeyError) as caught:
        items.extend(stream())
    assert caught.value is error
    assert items == ["d1"]
    _assert_error_span(spans.one("retrieval s"), error)


# --- generators ---------------------------------------------------------------------------
def test_generator_span_covers_iteration_and_ends_once(spans: CapturedSpans) -> None:
    @llmspans.retrieval(data_source="s")
    def stream(n: int):
        for i in range(n):
            assert current_stage() is not None
            yield {"id": f"d{i}", "score": 1.0 / (i + 1)}
        return "done"

    generator = stream(3)
    assert len(spans) == 0  # not started before iteration
    assert next(generator)["id"] == "d0"
    assert current_stage() is None  # the stage context does not leak into the consumer
    assert len(spans) == 0
    rest = list(generator)
    assert [item["id"] for item in rest] == ["d1", "d2"]
    span = spans.one("retrieval s")
    assert span.attributes is not None
    assert span.attributes[A.RETRIEVAL_DOCUMENT_IDS] == ("d0", "d1", "d2")
    assert span.attributes[A.RETRIEVAL_SCORES] == (1.0, 0.5, 1.0 / 3)
    assert span.status.status_code is StatusCode.UNSET


def test_generator_return_value_and_send(spans: CapturedSpans) -> None:
    @llmspans.action(name="echo")
    def echo():
        received = yield "ready"
        while received != "stop":
            received = yield received * 2
        return "finished"

    generator = echo()
    assert next(generator) == "ready"
    assert generator.send(2) == 4
    assert generator.send("a") == "aa"
    with pytest.raises(StopIteration) as stop:
        generator.send("stop")
    assert stop.value.value == "finished"
    assert spans.names() == ["execute_tool echo"]


def test_generator_break_ends_span(spans: CapturedSpans) -> None:
    closed: list[bool] = []

    @llmspans.retrieval(data_source="s")
    def stream():
        try:
            yield from ("a", "b", "c")
        finally:
            closed.append(True)

    for item in stream():
        if item == "a":
            break
    # The loop held the only reference: the generator is finalised right here.
    assert closed == [True]
    span = spans.one("retrieval s")
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET


def test_generator_close_ends_span_once(spans: CapturedSpans) -> None:
    @llmspans.retrieval(data_source="s")
    def stream():
        yield "a"
        yield "b"

    generator = stream()
    next(generator)
    generator.close()
    generator.close()
    assert len(spans.by_name("retrieval s")) == 1


def test_generator_throw_handled_and_unhandled(spans: CapturedSpans) -> None:
    @llmspans.action(name="resilient")
    def resilient():
        while True:
            try:
                yield "value"
            except ValueError:
                yield "recovered"

    generator = resilient()
    next(generator)
    assert generator.throw(ValueError("x")) == "recovered"
    generator.close()
    assert spans.one("execute_tool resilient").status.status_code is StatusCode.UNSET

    error = RuntimeError("boom")

    @llmspans.action(name="fragile")
    def fragile():
        yield 1

    generator = fragile()
    next(generator)
    with pytest.raises(RuntimeError) as caught:
        generator.throw(error)
    assert caught.value is error
    _assert_error_span(spans.one("execute_tool fragile"), error)


def test_abandoned_generator_ends_span_on_gc(spans: CapturedSpans) -> None:
    @llmspans.retrieval(data_source="s")
    def stream():
        yield "a"
        yield "b"

    generator = stream()
    next(generator)
    del generator  # freed by reference counting
    assert len(spans.by_name("retrieval s")) == 1

    # Held only by a reference cycle: ended by the cyclic garbage collector.
    holder: list[object] = []
    cyclic = stream()
    holder.append(cyclic)
    holder.append(holder)
    next(cyclic)
    del cyclic, holder
    assert len(spans.by_name("retrieval s")) == 1
    gc.collect(1)
    assert len(spans.by_name("retrieval s")) == 2


# --- async generators ----------------------------------------------------------------
async def test_async_generator_exhaustion(spans: CapturedSpans) -> None:
    @llmspans.generation(model="m")
    async def stream():
        for token in ("a", "b"):
            await asyncio.sleep(0)
            yield token
        llmspans.record_generation(input_tokens=3, output_tokens=2)

    tokens = [token async for token in stream()]
    assert tokens == ["a", "b"]
    attributes = spans.attributes("chat m")
    assert attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 2


async def test_async_generator_break_aclose_and_athrow(spans: CapturedSpans) -> None:
    closed: list[str] = []

    @llmspans.retrieval(data_source="s")
    async def stream(tag: str):
        try:
            for item in ("a", "b", "c"):
                try:
                    yield item
                except ValueError:
                    yield "handled"
        finally:
            closed.append(tag)

    iterator = stream("aclose")
    assert await iterator.__anext__() == "a"
    assert await iterator.athrow(ValueError("x")) == "handled"
    await iterator.aclose()
    await iterator.aclose()

    async for item in stream("break"):
        if item == "a":
            break
    # The abandoned generator is freed at once; the loop's async generator finaliser
    # schedules its aclose() on the next turns.
    for _ in range(5):
        await asyncio.sleep(0)

    error = OSError("disk")
    failing = stream("throw")
    await failing.__anext__()
    with pytest.raises(OSError) as caught:
        await failing.athrow(error)
    assert caught.value is error

    assert sorted(closed) == ["aclose", "break", "throw"]
    found = spans.by_name("retrieval s")
    assert len(found) == 3
    statuses = sorted(span.status.status_code.name for span in found)
    assert statuses == ["ERROR", "UNSET", "UNSET"]


async def test_async_generator_context_does_not_leak_between_steps(spans: CapturedSpans) -> None:
    @llmspans.context_selection(name="sel")
    async def select():
        stage = current_stage()
        assert stage is not None and stage.stage == "context_selection"
        yield {"id": "x"}

    async for _item in select():
        assert current_stage() is None
    assert spans.attributes("context_selection sel")[A.CONTEXT_SELECTED_IDS] == ("x",)


# --- internal failures never reach the user --------------------------------------------------
class _BrokenTracer:
    def start_span(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("tracer is broken")


def test_internal_error_is_logged_once_and_the_call_proceeds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(STATE, "tracer", _BrokenTracer())
    monkeypatch.setattr(STATE, "tracer_proxied", False)

    @llmspans.retrieval
    def search(x: int) -> int:
        return x * 2

    @llmspans.generation
    async def answer() -> str:
        return "ok"

    @llmspans.action
    def stream():
        yield 1

    with caplog.at_level(logging.WARNING, logger="llmspans"):
        assert [search(i) for i in range(3)] == [0, 2, 4]
        assert asyncio.run(answer()) == "ok"
        assert list(stream()) == [1]
    messages = [r for r in caplog.records if "span.start" in r.getMessage()]
    assert len(messages) == 1
    assert messages[0].exc_info is not None


def test_broken_extraction_keeps_the_result(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    class Weird:
        def __len__(self) -> int:
            raise RuntimeError("no len")

        def __getitem__(self, index: int) -> object:
            raise RuntimeError("no items")

    from collections.abc import Sequence

    Sequence.register(Weird)
    weird = Weird()

    @llmspans.retrieval(data_source="w")
    def search() -> Weird:
        return weird

    with caplog.at_level(logging.WARNING, logger="llmspans"):
        assert search() is weird
    span = spans.one("retrieval w")
    assert A.RETRIEVAL_DOCUMENT_IDS not in (span.attributes or {})
    assert any("retrieval.result" in r.getMessage() for r in caplog.records)


def test_no_tracing_configured_means_no_spans_and_no_error() -> None:
    # With no provider anywhere, calls run through non-recording spans.
    @llmspans.pipeline("p")
    def run() -> str:
        assert llmspans.current_run() is None
        return "ok"

    assert run() == "ok"


def test_instrumentor_enrichment_of_the_stage_span_wins_over_static_options(
    spans: CapturedSpans,
) -> None:
    @llmspans.generation(model="gpt-4o", provider="openai")
    def answer() -> str:
        # What an auto-instrumented client does inside a decorated generation.
        assert enclosing_stage("generation") is not None
        request = Request(
            stage="generation",
            name="chat gpt-4o-2024-08-06",
            kind=SpanKind.CLIENT,
            attributes={A.GEN_AI_REQUEST_MODEL: "gpt-4o-2024-08-06"},
        )
        call = StageCall.start(trace.get_tracer("client"), request)
        assert not call.owned
        call.set(A.GEN_AI_USAGE_INPUT_TOKENS, 10)
        call.end()
        return "ok"

    answer()
    attributes = spans.attributes("chat gpt-4o")
    assert attributes[A.GEN_AI_REQUEST_MODEL] == "gpt-4o-2024-08-06"
    assert attributes[A.GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 10
    assert attributes[A.STAGE] == "generation"
