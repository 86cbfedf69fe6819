"""Trace assembly: spans grouped by trace id until the trace is final (SPEC section 6).

A trace is final when it has a root (a span without parent, or a pipeline span,
which only arrives once the run has ended) and no span of it arrived for
``trace_idle_s``; or, root or not, ``trace_timeout_s`` after its first span. The
ids of final traces stay in a bounded FIFO cache, so a span arriving afterwards is
recognised as *late*: the caller forwards it unchanged and never feeds it to the
metrics a second time. Once an id has left the cache, a late span starts a new
trace (documented in docs/collector.md).

Pure bookkeeping: no I/O, no clock. Callers pass ``now`` (monotonic seconds).
Finding the traces to finalise costs amortised O(1) per trace: one dict keeps the
rooted traces in last-touch order (idle check; a touch moves the key to the end),
the trace dict itself keeps them in first-seen order (timeout check), so a sweep
only looks at the traces that are due.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

from llmspans import _attributes as A
from llmspans.core.records import SpanRecord


class Finalised(Enum):
    """Why a trace was finalised."""

    IDLE = "idle"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


@dataclass(slots=True, eq=False)
class Trace:
    """The spans of one trace received so far, plus spans held back for enrichment."""

    trace_id: bytes
    first_seen: float
    last_seen: float
    records: list[SpanRecord] = field(default_factory=list)
    #: a span without parent, or a pipeline span, has arrived
    rooted: bool = False
    #: some span carries ``llmspans.stage``: without one the core derives nothing
    staged: bool = False
    #: opaque items the caller holds back until the trace is final (pipeline spans);
    #: None until the first one (most traces hold one or none: no empty list each)
    held: list[object] | None = None


class Assembler:
    """Groups span records by trace id; tells which traces are final."""

    def __init__(
        self,
        trace_idle_s: float,
        trace_timeout_s: float,
        finalized_cache_size: int,
    ) -> None:
        self.trace_idle_s = trace_idle_s
        self.trace_timeout_s = trace_timeout_s
        self._cache_size = finalized_cache_size
        # trace id -> trace, in first-seen order (dicts keep insertion order)
        self._traces: dict[bytes, Trace] = {}
        # rooted traces in last-touch order (a touch re-inserts the key at the end);
        # an unrooted trace waits for its timeout. A plain dict costs less memory per
        # trace than an OrderedDict.
        self._idle_order: dict[bytes, Trace] = {}
        # ids of final traces, oldest first
        self._finalised: OrderedDict[bytes, None] = OrderedDict()
        self.inflight_spans = 0

    @property
    def inflight_traces(self) -> int:
        return len(self._traces)

    def is_final(self, trace_id: bytes) -> bool:
        """Whether ``trace_id`` was finalised and is still remembered."""
        return trace_id in self._finalised

    def add(self, record: SpanRecord, now: float) -> Trace | None:
        """Add one record; returns its trace, or ``None`` when the trace is already final."""
        trace_id = record.trace_id
        trace = self._traces.get(trace_id)
        if trace is None:
            if trace_id in self._finalised:
                return None
            trace = Trace(trace_id, now, now)
            self._traces[trace_id] = trace
        else:
            # One bytes object per trace instead of one per span.
            record.trace_id = trace.trace_id
            trace.last_seen = now
        trace.records.append(record)
        if record.stage is not None:
            trace.staged = True
        self.inflight_spans += 1
        if trace.rooted:
            idle_order = self._idle_order
            del idle_order[trace_id]
            idle_order[trace_id] = trace
        elif not record.parent_span_id or record.stage == A.STAGE_PIPELINE:
            trace.rooted = True
            self._idle_order[trace_id] = trace
        return trace

    def due(self, now: float, limit: int | None = None) -> list[tuple[Trace, Finalised]]:
        """Remove and return the traces that are final at ``now``, at most ``limit``
        (oldest first), so that one call never blocks for long after a burst."""
        budget = limit if limit is not None else len(self._traces)
        # One iterator per order, stopping at the first trace not yet due: restarting
        # from the front after each removal would rescan the holes deletions leave in
        # a dict, quadratic in the number of traces finalised at once.
        idle_before = now - self.trace_idle_s
        idle: list[Trace] = []
        for trace in self._idle_order.values():
            if trace.last_seen > idle_before or len(idle) >= budget:
                break
            idle.append(trace)
        for trace in idle:
            self._finish(trace)
        timeout_before = now - self.trace_timeout_s
        timed_out: list[Trace] = []
        budget -= len(idle)
        for trace in self._traces.values():
            if trace.first_seen > timeout_before or len(timed_out) >= budget:
                break
            timed_out.append(trace)
        for trace in timed_out:
            self._finish(trace)
        return [(trace, Finalised.IDLE) for trace in idle] + [
            (trace, Finalised.TIMEOUT) for trace in timed_out
        ]

    def drain(self) -> list[tuple[Trace, Finalised]]:
        """Remove and return every in-flight trace (shutdown)."""
        done = [(trace, Finalised.SHUTDOWN) for trace in list(self._traces.values())]
        for trace, _ in done:
            self._finish(trace)
        return done

    def _finish(self, trace: Trace) -> None:
        trace_id = trace.trace_id
        del self._traces[trace_id]
        self._idle_order.pop(trace_id, None)
        self.inflight_spans -= len(trace.records)
        if self._cache_size:
            finalised = self._finalised
            finalised[trace_id] = None
            if len(finalised) > self._cache_size:
                finalised.popitem(last=False)
