"""Trace assembly: idle and timeout finalisation, late spans, the bounded id cache."""

from __future__ import annotations

from llmspans import _attributes as A
from llmspans.core.engine import Assembler, Finalised
from llmspans.core.records import SpanRecord

TRACE_A = b"a" * 16
TRACE_B = b"b" * 16


def record(trace: bytes, span: bytes, parent: bytes = b"", stage: str | None = None) -> SpanRecord:
    return SpanRecord(trace_id=trace, span_id=span * 8, parent_span_id=parent, stage=stage)


def test_rooted_trace_is_final_after_idle_and_every_span_is_kept() -> None:
    assembler = Assembler(trace_idle_s=2.0, trace_timeout_s=60.0, finalized_cache_size=10)
    assembler.add(record(TRACE_A, b"1", parent=b"r" * 8), now=0.0)
    assembler.add(record(TRACE_A, b"r"), now=1.0)
    assert assembler.inflight_spans == 2
    assert assembler.due(2.9) == []  # idle counts from the last span
    assembler.add(record(TRACE_A, b"2", parent=b"r" * 8), now=2.5)
    assert assembler.due(4.4) == []
    ((trace, why),) = assembler.due(4.5)
    assert why is Finalised.IDLE
    assert [r.span_id[:1] for r in trace.records] == [b"1", b"r", b"2"]
    assert assembler.inflight_spans == 0
    assert assembler.inflight_traces == 0


def test_trace_without_root_waits_for_timeout() -> None:
    assembler = Assembler(trace_idle_s=1.0, trace_timeout_s=10.0, finalized_cache_size=10)
    assembler.add(record(TRACE_A, b"1", parent=b"x" * 8), now=0.0)
    assert assembler.due(5.0) == []
    ((trace, why),) = assembler.due(10.0)
    assert why is Finalised.TIMEOUT and trace.trace_id == TRACE_A


def test_pipeline_span_counts_as_root_even_under_a_remote_parent() -> None:
    assembler = Assembler(trace_idle_s=1.0, trace_timeout_s=10.0, finalized_cache_size=10)
    assembler.add(record(TRACE_A, b"p", parent=b"x" * 8, stage=A.STAGE_PIPELINE), now=0.0)
    ((_, why),) = assembler.due(1.0)
    assert why is Finalised.IDLE


def test_late_spans_are_recognised_while_the_id_is_cached() -> None:
    assembler = Assembler(trace_idle_s=1.0, trace_timeout_s=10.0, finalized_cache_size=1)
    assembler.add(record(TRACE_A, b"r"), now=0.0)
    assembler.add(record(TRACE_B, b"r"), now=0.5)
    assert len(assembler.due(1.0)) == 1
    assert assembler.is_final(TRACE_A)
    assert assembler.add(record(TRACE_A, b"2", parent=b"r" * 8), now=1.1) is None
    assert assembler.inflight_spans == 1
    assert len(assembler.due(1.5)) == 1
    # The cache holds one id: B pushed A out, so A's next span starts a new trace.
    assert not assembler.is_final(TRACE_A) and assembler.is_final(TRACE_B)
    assert assembler.add(record(TRACE_A, b"3", parent=b"r" * 8), now=2.0) is not None


def test_drain_finalises_everything() -> None:
    assembler = Assembler(trace_idle_s=1.0, trace_timeout_s=10.0, finalized_cache_size=10)
    assembler.add(record(TRACE_A, b"1", parent=b"x" * 8), now=0.0)
    assembler.add(record(TRACE_B, b"r"), now=0.0)
    drained = assembler.drain()
    assert {trace.trace_id for trace, _ in drained} == {TRACE_A, TRACE_B}
    assert all(why is Finalised.SHUTDOWN for _, why in drained)
    assert assembler.inflight_spans == 0


def test_a_burst_of_due_traces_is_finalised_in_steps_oldest_first() -> None:
    assembler = Assembler(trace_idle_s=1.0, trace_timeout_s=10.0, finalized_cache_size=100)
    for index in range(10):
        assembler.add(record(index.to_bytes(16, "big"), b"r"), now=index * 0.01)
    first = assembler.due(5.0, limit=4)
    assert [trace.trace_id[-1] for trace, _ in first] == [0, 1, 2, 3]
    assert assembler.inflight_traces == 6
    rest = assembler.due(5.0, limit=100)
    assert [trace.trace_id[-1] for trace, _ in rest] == [4, 5, 6, 7, 8, 9]


def test_spans_beyond_max_trace_spans_are_counted_not_kept_and_bytes_are_released() -> None:
    assembler = Assembler(trace_idle_s=1.0, trace_timeout_s=60.0, max_trace_spans=3)
    for index in range(10):
        assembler.add(record(TRACE_A, bytes([65 + index]), parent=b"r" * 8), 0.0, size=100)
    assert assembler.inflight_spans == 3 and assembler.truncated_spans == 7
    assert assembler.inflight_bytes == 300  # only what is kept is held
    ((trace, _),) = assembler.due(61.0)
    assert len(trace.records) == 3 and trace.truncated == 7
    assert assembler.inflight_bytes == 0


def test_local_roots_close_a_trace_and_late_spans_are_found_by_parent() -> None:
    """The embedded mode's rules: a local root ends its group at once; a span whose
    parent belongs to a final group is late; a new local root in the same trace
    starts a new group (a second request of one distributed trace)."""
    assembler = Assembler(trace_idle_s=float("inf"), late_by_parent=True)
    assembler.add(record(TRACE_A, b"c", parent=b"r" * 8), 0.0)
    assembler.add(record(TRACE_A, b"r", parent=b"x" * 8), 0.0, closes=True)
    ((first, why),) = assembler.due(0.0)
    assert why is Finalised.LOCAL_ROOT and len(first.records) == 2
    assert assembler.add(record(TRACE_A, b"l", parent=b"r" * 8), 1.0) is None  # late
    assert assembler.add(record(TRACE_A, b"m", parent=b"l" * 8), 1.0) is None  # its child too
    second = assembler.add(record(TRACE_A, b"s", parent=b"y" * 8), 1.0, closes=True)
    assert second is not None and second is not first
    ((done, _),) = assembler.due(1.0)
    assert done is second and assembler.inflight_traces == 0
