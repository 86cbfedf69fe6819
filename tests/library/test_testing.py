"""The public testing helpers."""

from __future__ import annotations

import pytest
from opentelemetry import trace

import llmspans
from llmspans.testing import SeededIdGenerator, assert_context_clean, capture_spans


@llmspans.pipeline("p")
def run() -> None:
    stage()


@llmspans.action
def stage() -> None:
    return None


def ids(seed: int) -> list[tuple[int, int]]:
    with capture_spans(seed) as spans:
        run()
    return [(s.context.trace_id, s.context.span_id) for s in spans if s.context is not None]


def test_ids_are_deterministic_per_seed() -> None:
    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
    generator = SeededIdGenerator(7)
    assert generator.generate_trace_id() != 0
    assert generator.generate_span_id() != 0


def test_capture_does_not_touch_the_global_provider() -> None:
    before = trace.get_tracer_provider()
    with capture_spans() as spans:
        run()
        assert trace.get_tracer_provider() is before
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert len(spans) == 2
    assert spans.children(spans.one("invoke_workflow p"))[0].name == "execute_tool stage"
    assert [s.name for s in spans.by_stage("action")] == ["execute_tool stage"]
    spans.clear()
    assert len(spans) == 0


def test_spans_outside_the_block_are_not_captured() -> None:
    with capture_spans() as spans:
        pass
    run()
    assert len(spans) == 0


def test_one_explains_what_it_found() -> None:
    with capture_spans() as spans:
        run()
        run()
    with pytest.raises(AssertionError, match="found 2"):
        spans.one("execute_tool stage")
    with pytest.raises(AssertionError, match="found 0"):
        spans.one("nothing")


def test_assert_context_clean_detects_a_leaked_stage() -> None:
    from opentelemetry import context as otel_context

    with capture_spans():
        leaked = {}

        @llmspans.action
        def leak() -> None:
            leaked["ctx"] = otel_context.get_current()

        leak()
        token = otel_context.attach(leaked["ctx"])
        try:
            with pytest.raises(AssertionError):
                assert_context_clean()
        finally:
            otel_context.detach(token)
    assert_context_clean()
