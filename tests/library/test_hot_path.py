"""The decorators' hot path: the stage records, the tracer, the generator context switch.

These pin down the behaviour the cheaper implementation must keep: one stage object
per call, the same kind an instrumentor builds, and its own record,
the library follows a global provider installed after import without the proxy,
and a generator stage's context is attached only while the generator runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN

import llmspans
from llmspans._context import STAGE_KEY, Stage, current_stage
from llmspans.testing import CapturedSpans


def test_a_stage_is_the_record_of_one_call() -> None:
    stage = Stage("retrieval", INVALID_SPAN)
    twin = Stage("retrieval", INVALID_SPAN)
    assert stage != twin  # one record per call, compared by identity
    assert stage.recorded == {} and stage.pending == {}
    assert stage.recorded is not twin.recorded  # fresh dicts per call
    assert stage.pending is not twin.pending
    assert stage.recording is False  # INVALID_SPAN does not record
    assert stage.pipeline is None and stage.run_span is None
    assert not hasattr(stage, "__dict__")  # slotted: no per-call dict
    assert repr(stage).startswith("Stage(stage='retrieval'")


def test_a_decorated_stage_has_every_field_set(spans: CapturedSpans) -> None:
    # The decorators build their Stage field by field (cheaper than calling the
    # class): a field added to Stage and forgotten there would raise on first read.
    seen: list[Stage | None] = []

    @llmspans.generation("gpt-4o")
    def answer() -> str:
        seen.append(current_stage())
        return "a"

    answer()
    built = seen[0]
    assert built is not None
    reference = Stage("generation", built.span)
    for name in Stage.__slots__:
        assert hasattr(built, name), name
        assert type(getattr(built, name)) is type(getattr(reference, name)) or name in {
            "pipeline",
            "run_span",
            "recording",
            "deferred",
            "ended",
        }, name


def test_the_decorated_stage_is_visible_to_instrumentors(spans: CapturedSpans) -> None:
    seen: list[Stage | None] = []

    @llmspans.retrieval("faq")
    def search() -> list[str]:
        seen.append(current_stage())
        return []

    search()
    active = seen[0]
    assert isinstance(active, Stage)
    assert active.stage == "retrieval"
    assert active.deferred is True  # a decorated stage sets its attributes when it ends
    assert active.recording is True
    assert active.span.get_span_context().span_id == spans.one("retrieval faq").context.span_id
    assert current_stage() is None


def test_generator_stage_context_only_while_the_generator_runs(spans: CapturedSpans) -> None:
    inside: list[str | None] = []
    outside: list[str | None] = []

    def stage_name() -> str | None:
        active = otel_context.get_value(STAGE_KEY)
        return active.stage if isinstance(active, Stage) else None

    @llmspans.generation("gpt-4o")
    def stream() -> Iterator[int]:
        for index in range(5):
            inside.append(stage_name())
            yield index
        inside.append(stage_name())

    with trace.get_tracer("consumer").start_as_current_span("consumer"):
        for _ in stream():
            outside.append(stage_name())
    assert inside == ["generation"] * 6
    assert outside == [None] * 5
    assert len(spans.by_name("chat gpt-4o")) == 1


def test_global_provider_installed_after_import_is_used_directly() -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        import llmspans
        from llmspans import _tracing

        @llmspans.action
        def act():
            return 1

        act()  # no provider yet: a non-recording span through the proxy
        assert isinstance(_tracing.get_tracer(), trace.ProxyTracer)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        act()
        act()
        tracer = _tracing.get_tracer()
        assert not isinstance(tracer, trace.ProxyTracer), tracer
        finished = exporter.get_finished_spans()
        assert [s.name for s in finished] == ["execute_tool act"] * 2
        assert {s.instrumentation_scope.name for s in finished} == {"llmspans"}
        mine = TracerProvider()
        previous = _tracing.use_tracer_provider(mine)
        assert previous is None and _tracing.get_tracer_provider() is mine
        _tracing.use_tracer_provider(None)
        act()
        assert len(exporter.get_finished_spans()) == 3
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_generator_steps_run_in_a_context_of_their_own(spans: CapturedSpans) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    @llmspans.retrieval("faq")
    def stream() -> Iterator[int]:
        seen.append(var.get())
        var.set("inner")
        yield 1
        seen.append(var.get())
        yield 2

    var.set("before")
    iterator = stream()
    assert next(iterator) == 1
    assert var.get() == "before"  # what the generator set stays inside it
    var.set("consumer")
    assert list(iterator) == [2]
    assert seen == ["before", "inner"]  # a copy taken when iteration started
    assert len(spans.by_name("retrieval faq")) == 1
