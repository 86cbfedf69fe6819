"""The application is never hurt by its tracing.

Whatever goes wrong on our side (an exporter that raises, a span processor with a
bug, a collector that is down, a document extractor or a redaction hook that
raises, a return value no extractor understands), a decorated function returns
the very object it returned undecorated and raises the very exception it raised,
with its traceback, for sync and async functions, generators and async
generators alike. And the call latency does not depend on whether the collector
is up.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _content, _decorators
from llmspans._tracing import use_tracer_provider
from llmspans.testing import assert_context_clean

from .support import dead_port, figures


class ExplodingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("backend exploded")

    def shutdown(self) -> None:
        return None


class BuggyProcessor(SpanProcessor):
    """A span processor with a bug (a broken vendor processor)."""

    def __init__(self, on_start_too: bool) -> None:
        self.on_start_too = on_start_too

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if self.on_start_too:
            raise RuntimeError("bug in on_start")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("bug in on_end")


class Hostile:
    """A return value whose every protocol method raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iteration")

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = None  # type: ignore[assignment]


class LyingSequence(list[Any]):
    """A list whose items change type under the extractor's feet."""

    def __getitem__(self, index: Any) -> Any:
        raise KeyError(index)


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


class Interrupt(BaseException):
    pass


def _document(i: int) -> Any:
    return {"id": f"d{i}", "score": 0.5, "text": "SECRET text"}


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.lists(st.integers(0, 5).map(_document), max_size=5),
    st.lists(st.dictionaries(st.text(max_size=4), st.integers() | st.none()), max_size=3),
    st.dictionaries(
        st.sampled_from(["ids", "documents", "distances", "choices", "usage", "x"]),
        st.lists(st.integers() | st.text(max_size=3) | st.none(), max_size=3) | st.none(),
    ),
    st.builds(Hostile),
    st.builds(LyingSequence, st.lists(st.integers(0, 3).map(_document), min_size=1, max_size=3)),
    st.just(float("nan")),
    st.just(object()),
    st.just(iter([1, 2])),
    st.tuples(st.text(max_size=3), st.floats()),
    st.sets(st.integers(), max_size=3),
)
exceptions = st.one_of(
    st.none(),
    st.sampled_from(
        [ValueError, KeyError, RuntimeError, TimeoutError, BadStr, Interrupt, StopAsyncIteration]
    ).map(lambda kind: kind("boom")),
)
SHAPES = ("sync", "async", "generator", "async_generator")
DECORATORS: dict[str, Callable[[Any], Any]] = {
    "pipeline": llmspans.pipeline("hurt"),
    "retrieval": llmspans.retrieval(data_source="faq"),
    "context_selection": llmspans.context_selection,
    "generation": llmspans.generation(model="m"),
    "action": llmspans.action(verify=lambda result, *a, **k: result),
}
FAULTS = ("exporter_raises", "processor_bug", "extractor_bug", "redactor_bug", "collector_down")


def _make(shape: str, value: object, error: BaseException | None, items: int) -> Callable[..., Any]:
    if shape == "sync":

        def sync_fn(query: str) -> object:
            if error is not None:
                raise error
            return value

        return sync_fn
    if shape == "async":

        async def async_fn(query: str) -> object:
            await asyncio.sleep(0)
            if error is not None:
                raise error
            return value

        return async_fn
    if shape == "generator":

        def gen_fn(query: str) -> Iterator[object]:
            for _ in range(items):
                yield value
            if error is not None:
                raise error
            return value

        return gen_fn

    async def agen_fn(query: str) -> Any:
        for _ in range(items):
            await asyncio.sleep(0)
            yield value
        if error is not None:
            raise error

    return agen_fn


def _run(shape: str, fn: Callable[..., Any]) -> tuple[str, Any]:
    """Call ``fn`` the way its shape is called; ("ok", result) or ("raised", exception)."""
    try:
        if shape == "sync":
            return "ok", fn("SECRET query")
        if shape == "async":
            return "ok", asyncio.run(fn("SECRET query"))
        if shape == "generator":
            gen = fn("SECRET query")
            got = []
            while True:
                try:
                    got.append(next(gen))
                except StopIteration as stop:
                    return "ok", (got, stop.value)

        async def consume() -> list[Any]:
            return [item async for item in fn("SECRET query")]

        return "ok", (asyncio.run(consume()), None)
    except BaseException as exc:
        return "raised", exc


@pytest.fixture(params=["end_bug", "start_bug"])
def faulty_provider(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A provider with every fault at once.

    ``start_bug``: a span processor that raises in ``on_start`` makes every span
    fail to start, so every call runs untraced; ``end_bug``: it raises in ``on_end``
    after the in-memory exporter has the span, so tracing goes on.
    """
    start_bug = request.param == "start_bug"
    with dead_port() as port:
        exploding = ExplodingExporter()
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exploding))
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1),
                schedule_delay_millis=50,
            )
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        provider.add_span_processor(BuggyProcessor(on_start_too=start_bug))

        def broken_extractor(value: object) -> Any:
            raise RuntimeError("bug in the document extractor")

        def broken_redactor(text: str) -> str | None:
            raise RuntimeError("bug in the redaction hook")

        monkeypatch.setattr(_decorators, "extract_documents", broken_extractor)
        _content.set_capture(True)
        _content.set_redactor(broken_redactor)
        previous = use_tracer_provider(provider)
        try:
            yield {"memory": memory, "exploding": exploding, "start_bug": start_bug}
        finally:
            use_tracer_provider(previous)
            _content.set_capture(None)
            _content.set_redactor(None)
            provider.shutdown()


def _describe(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} without repr>"


def _same_traceback(raised: BaseException, original_frames: list[str]) -> bool:
    frames = []
    tb = raised.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return frames[-len(original_frames) :] == original_frames


def test_results_and_exceptions_unchanged_under_every_fault(
    faulty_provider: dict[str, Any],
) -> None:
    tally: Counter[str] = Counter()

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        shape=st.sampled_from(SHAPES),
        stage=st.sampled_from(sorted(DECORATORS)),
        value=odd_values,
        error=exceptions,
        items=st.integers(0, 3),
    )
    def check(
        shape: str, stage: str, value: object, error: BaseException | None, items: int
    ) -> None:
        if shape == "async_generator" and isinstance(error, StopAsyncIteration):
            error = ValueError("boom")  # PEP 525 turns it into RuntimeError, decorated or not
        if error is not None:
            error.__traceback__ = None
        plain = _make(shape, value, error, items)
        decorated = DECORATORS[stage](_make(shape, value, error, items))
        expected_kind, expected = _run(shape, plain)
        if error is not None:
            error.__traceback__ = None
        kind, got = _run(shape, decorated)
        tally["calls"] += 1
        tally[f"{kind}"] += 1
        assert kind == expected_kind, (kind, _describe(got), _describe(expected))
        if kind == "raised":
            assert got is error or (
                isinstance(expected, RuntimeError) and type(got) is type(expected)
            ), (_describe(got), _describe(expected))
            fn_name = {
                "sync": "sync_fn",
                "async": "async_fn",
                "generator": "gen_fn",
                "async_generator": "agen_fn",
            }[shape]
            assert _same_traceback(got, [fn_name]), "the user's frame must stay innermost"
        elif shape in ("sync", "async"):
            assert got is value
        else:
            items_got, returned = got
            assert len(items_got) == items and all(item is value for item in items_got)
            if shape == "generator":
                assert returned is value
        assert_context_clean()

    check()
    spans = len(faulty_provider["memory"].get_finished_spans())
    figures(
        f"app never hurt ({'processor on_start' if faulty_provider['start_bug'] else 'on_end'})",
        **tally,
        faults="+".join(FAULTS),
        spans_recorded=spans,
        exporter_failures=faulty_provider["exploding"].calls,
    )
    if faulty_provider["start_bug"]:
        assert spans == 0, "a span that cannot start is not recorded; the call runs untraced"
    else:
        assert spans >= tally["calls"], "tracing goes on despite the faults"


def test_content_dropped_not_leaked_when_the_redaction_hook_raises(
    faulty_provider: dict[str, Any],
) -> None:
    @llmspans.generation(model="m")
    def answer(question: str) -> str:
        return "SECRET answer"

    assert answer("SECRET question") == "SECRET answer"
    if faulty_provider["start_bug"]:
        assert not faulty_provider["memory"].get_finished_spans()
        return
    [span] = [s for s in faulty_provider["memory"].get_finished_spans() if s.name == "chat m"]
    rendered = repr(dict(span.attributes or {})) + repr([e.attributes for e in span.events])
    assert "SECRET" not in rendered


def _latencies(calls: int, provider: TracerProvider) -> list[float]:
    @llmspans.retrieval(data_source="faq")
    def search(query: str) -> list[dict[str, Any]]:
        return [_document(i) for i in range(5)]

    @llmspans.generation(model="m")
    def generate(query: str, docs: list[Any]) -> str:
        return f"answer to {query} from {len(docs)}"

    @llmspans.pipeline("latency")
    def handle(query: str) -> str:
        return generate(query, search(query))

    previous = use_tracer_provider(provider)
    try:
        samples = []
        for i in range(calls):
            start = time.perf_counter()
            result = handle(f"q{i}")
            samples.append(time.perf_counter() - start)
            assert result == f"answer to q{i} from 5"
        return samples
    finally:
        use_tracer_provider(previous)


_EXPORT_TIMEOUT_S = 5.0


def test_collector_down_does_not_slow_the_app() -> None:
    """BatchSpanProcessor + OTLP to a dead port vs. the same pipeline with no exporter."""
    calls = 2_000
    rounds = 10
    baseline_provider = TracerProvider()
    dead_provider = TracerProvider()
    baseline: list[float] = []
    dead: list[float] = []
    with dead_port() as port:
        exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=_EXPORT_TIMEOUT_S
        )
        dead_provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=2048, schedule_delay_millis=20)
        )
        _latencies(200, baseline_provider)
        _latencies(200, dead_provider)
        # Interleaved rounds: both sides see the same load on the machine (whatever
        # else runs meanwhile slows both alike), so the ratio compares the exporters.
        for _ in range(rounds):
            baseline += _latencies(calls // rounds, baseline_provider)
            dead += _latencies(calls // rounds, dead_provider)
        started = time.perf_counter()
        dead_provider.shutdown()
        shutdown_s = time.perf_counter() - started

    def p(samples: list[float], q: float) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))] * 1e6

    ratio = statistics.median(dead) / statistics.median(baseline)
    figures(
        "collector down: app latency",
        calls=calls,
        no_exporter_p50_us=f"{p(baseline, 0.5):.1f}",
        no_exporter_p99_us=f"{p(baseline, 0.99):.1f}",
        dead_collector_p50_us=f"{p(dead, 0.5):.1f}",
        dead_collector_p99_us=f"{p(dead, 0.99):.1f}",
        dead_collector_max_ms=f"{max(dead) * 1e3:.1f}",
        p50_ratio=f"{ratio:.2f}",
        shutdown_s=f"{shutdown_s:.2f}",
    )
    assert ratio < 3.0
    # The exporter's own timeout is 5 s and its retries back off for seconds: a call
    # that waited on it would take at least that long. The slowest call shows none did
    # (the margin absorbs scheduling stalls on a loaded machine, which are not waits).
    slowest = max(dead)
    assert slowest < _EXPORT_TIMEOUT_S / 2, f"slowest call {slowest:.3f}s waited on the exporter"
