"""The engine every mode runs: assemble spans into traces, evaluate them, aggregate metrics.

Three adapters feed it: the collector (OTLP in), the embedded mode (an SDK span
processor) and ``llmspans analyze`` (recorded files). Its interface is small: add
a record, ask what is due, drain; then :meth:`Engine.evaluate` turns a finished
trace into verdicts and records its metrics into the shared store.

When a trace is final (docs/conventions.md section 6):

* **idle**: it has a root (a span without parent, or a pipeline span, which only
  arrives once its run has ended) and no span of it arrived for ``trace_idle_s``;
* **timeout**: root or not, ``trace_timeout_s`` after its first span;
* **local root**: the adapter says the span closes the trace (the embedded mode,
  when the local root span of this process ends: children end before parents);
* **limit**: the adapter evicts the oldest traces to stay within its memory bounds;
* **shutdown**: everything still waiting, on :meth:`Assembler.drain`.

The ids of final traces stay in a bounded FIFO cache, so a span arriving afterwards
is recognised as *late* and never changes a run's numbers twice. By default any
span of a final trace is late (the collector sees whole traces); with
``late_by_parent`` only a span whose parent belongs to the final trace is, and a
new local root in the same trace starts a new group (the embedded mode: a second
request of one distributed trace reaching this process).

Pure bookkeeping: no I/O, no clock (callers pass ``now``, monotonic seconds), no
locks (the owner serialises calls). Finding the traces to finalise costs amortised
O(1) per trace: one dict keeps the rooted traces in last-touch order (idle check),
the trace dict itself keeps them in first-seen order (timeout check), so a sweep
only looks at the traces that are due.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from typing import Final

from llmspans import _attributes as A
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.records import SpanRecord
from llmspans.core.store import MetricStore

__all__ = ["Assembler", "Engine", "Finalised", "Trace"]

_LAST_SEEN: Final = attrgetter("last_seen")
_FIRST_SEEN: Final = attrgetter("first_seen")


class Finalised(Enum):
    """Why a trace was finalised."""

    IDLE = "idle"
    TIMEOUT = "timeout"
    LOCAL_ROOT = "local_root"
    LIMIT = "limit"
    SHUTDOWN = "shutdown"


@dataclass(slots=True, eq=False)
class Trace:
    """The spans of one trace received so far, plus items held back for the adapter."""

    trace_id: bytes
    first_seen: float
    last_seen: float
    records: list[SpanRecord] = field(default_factory=list)
    #: a span without parent, or a pipeline span, has arrived
    rooted: bool = False
    #: some span carries ``llmspans.stage``: without one the core derives nothing
    staged: bool = False
    #: the adapter's estimate of the bytes this trace holds
    size: int = 0
    #: spans beyond ``max_trace_spans``, not kept for attribution
    truncated: int = 0
    #: opaque items the adapter holds back until the trace is final (the collector's
    #: pipeline spans); None until the first one (most traces hold one or none)
    held: list[object] | None = None


class Assembler:
    """Groups span records by trace id; tells which traces are final.

    ``max_trace_spans`` bounds the records kept per trace: attribution and metrics
    stay linear and bounded whatever one sender puts in a trace; spans beyond it are
    counted in :attr:`Trace.truncated` and :attr:`truncated_spans`.
    """

    def __init__(
        self,
        trace_idle_s: float = 2.0,
        trace_timeout_s: float = 60.0,
        finalized_cache_size: int = 100_000,
        *,
        late_by_parent: bool = False,
        max_trace_spans: int = 100_000,
    ) -> None:
        self.trace_idle_s = trace_idle_s
        self.trace_timeout_s = trace_timeout_s
        self._cache_size = max(0, finalized_cache_size)
        self._late_by_parent = late_by_parent
        self.max_trace_spans = max(1, max_trace_spans)
        # trace id -> trace, in first-seen order (dicts keep insertion order)
        self._traces: dict[bytes, Trace] = {}
        # rooted traces in last-touch order (a touch re-inserts the key at the end);
        # an unrooted trace waits for its timeout
        self._idle_order: dict[bytes, Trace] = {}
        # traces a closing span made final, in the order they closed
        self._closed: dict[bytes, Trace] = {}
        # ids of final traces, oldest first; with late_by_parent, the ids of their spans
        self._finalised: OrderedDict[bytes, set[bytes] | None] = OrderedDict()
        self.inflight_spans = 0
        self.inflight_bytes = 0
        self.truncated_spans = 0

    @property
    def inflight_traces(self) -> int:
        return len(self._traces)

    def is_final(self, trace_id: bytes) -> bool:
        """Whether ``trace_id`` was finalised and is still remembered."""
        return trace_id in self._finalised

    def add(
        self, record: SpanRecord, now: float, size: int = 0, closes: bool = False
    ) -> Trace | None:
        """Add one record; returns its trace, or ``None`` when the span is late.

        ``size`` is the adapter's estimate of the bytes the record holds; ``closes``
        makes the trace final now (it is returned by the next :meth:`due`). Positional
        parameters: the collector calls this once per span, and keywords cost more.
        """
        trace_id = record.trace_id
        trace = self._traces.get(trace_id)
        if trace is None:
            if trace_id in self._finalised:
                done = self._finalised[trace_id]
                if done is None:
                    return None
                if record.parent_span_id in done:
                    done.add(record.span_id)  # its own late children are late too
                    return None
            trace = Trace(trace_id, now, now)
            self._traces[trace_id] = trace
        else:
            # One bytes object per trace instead of one per span.
            record.trace_id = trace.trace_id
            trace.last_seen = now
        if len(trace.records) < self.max_trace_spans:
            trace.records.append(record)
            if record.stage is not None:
                trace.staged = True
            self.inflight_spans += 1
            if size:
                trace.size += size
                self.inflight_bytes += size
        else:
            trace.truncated += 1
            self.truncated_spans += 1
        if closes:
            self._closed[trace_id] = trace
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
        (closed ones first, then idle, then timed out, oldest first), so that one call
        never blocks for long after a burst."""
        budget = limit if limit is not None else len(self._traces)
        found: list[tuple[Trace, Finalised]] = []
        if self._closed:
            closed = list(self._closed.values())[:budget]
            for trace in closed:
                self._finish(trace)
            found.extend((trace, Finalised.LOCAL_ROOT) for trace in closed)
            budget -= len(closed)
        # One iterator per order, stopping at the first trace not yet due: restarting
        # from the front after each removal would rescan the holes deletions leave in
        # a dict, quadratic in the number of traces finalised at once.
        if budget > 0 and not math.isinf(self.trace_idle_s):
            idle = self._finish_front(
                self._idle_order.values(), _LAST_SEEN, now - self.trace_idle_s, budget
            )
            found.extend((trace, Finalised.IDLE) for trace in idle)
            budget -= len(idle)
        if budget > 0:
            timed_out = self._finish_front(
                self._traces.values(), _FIRST_SEEN, now - self.trace_timeout_s, budget
            )
            found.extend((trace, Finalised.TIMEOUT) for trace in timed_out)
        return found

    def _finish_front(
        self,
        order: Iterable[Trace],
        seen: Callable[[Trace], float],
        before: float,
        budget: int,
    ) -> list[Trace]:
        """Finish the traces at the front of ``order`` whose ``seen`` time is at or
        before ``before``, at most ``budget`` of them; ``order`` is sorted by that
        time, so the walk stops at the first trace not yet due."""
        due: list[Trace] = []
        for trace in order:
            if seen(trace) > before or len(due) >= budget:
                break
            due.append(trace)
        for trace in due:
            self._finish(trace)
        return due

    def evict(self, max_traces: int, max_spans: int) -> list[tuple[Trace, Finalised]]:
        """Remove and return the oldest traces until at most ``max_traces`` traces and
        ``max_spans`` spans wait (for adapters that bound memory by finalising early)."""
        evicted: list[tuple[Trace, Finalised]] = []
        while self._traces and (
            len(self._traces) > max_traces or self.inflight_spans > max_spans
        ):
            trace = next(iter(self._traces.values()))
            self._finish(trace)
            evicted.append((trace, Finalised.LIMIT))
        return evicted

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
        self._closed.pop(trace_id, None)
        self.inflight_spans -= len(trace.records)
        self.inflight_bytes -= trace.size
        if not self._cache_size:
            return
        finalised = self._finalised
        if self._late_by_parent:
            done = finalised.get(trace_id) or set()
            done.update(record.span_id for record in trace.records)
            finalised[trace_id] = done
            finalised.move_to_end(trace_id)
        else:
            finalised[trace_id] = None
        if len(finalised) > self._cache_size:
            finalised.popitem(last=False)


class Engine:
    """Assembly, evaluation and aggregation: the one path from span records to metrics.

    The adapters call :meth:`add`, :meth:`due` (or :meth:`evict`, :meth:`drain`) on
    :attr:`assembler` and pass each finished trace to :meth:`evaluate`, which applies
    the attribution rules and records the trace's metrics into :attr:`store`.
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        store: MetricStore | None = None,
        assembler: Assembler | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.store = store if store is not None else MetricStore()
        self.assembler = assembler if assembler is not None else Assembler()

    def attribute(self, trace: Trace) -> TraceResult | None:
        """The runs and verdicts of a finished trace, nothing recorded; ``None`` for a
        trace without any stage span (nothing to derive: plain service traces)."""
        if not trace.staged:
            return None
        return evaluate_trace(trace.records, self.thresholds)

    def evaluate(self, trace: Trace) -> TraceResult | None:
        """:meth:`attribute`, with the trace's metrics recorded into :attr:`store`."""
        # What attribute() does, written out: this runs once per finished trace on the
        # collector's hot path, where a call level is a measurable share of the cost.
        if not trace.staged:
            return None
        result = evaluate_trace(trace.records, self.thresholds)
        self.store.record(result, trace.trace_id)
        return result
