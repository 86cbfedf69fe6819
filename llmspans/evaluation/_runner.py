"""Loading evaluators and calling them within bounds.

:class:`EvaluationRunner` serves a bounded queue of sampled runs with a bounded
number of concurrent evaluator calls, a budget (calls per minute, US dollars per
hour) and a timeout per call. It never blocks its caller unless asked to: a run
that does not fit is dropped and counted by reason. Results are collected, not
applied: the host takes them with :meth:`EvaluationRunner.take` and records them
under its own lock, so the core stays free of threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from llmspans.core.judging import (
    VERDICT_ERROR,
    VERDICT_TIMEOUT,
    EvaluatedRun,
    Judgment,
    accumulate_judgment,
    count_unjudged,
    record_dropped,
)
from llmspans.core.metrics import Labeler, MetricSink
from llmspans.core.model import Run, Thresholds, Verdict

__all__ = [
    "DROP_BUDGET_CALLS",
    "DROP_BUDGET_USD",
    "DROP_QUEUE_FULL",
    "DROP_SHUTDOWN",
    "EvaluationRunner",
    "Evaluator",
    "Outcome",
    "load_evaluator",
    "record_outcomes",
]

_log = logging.getLogger("llmspans.evaluation")

Evaluator = Callable[[EvaluatedRun], "Judgment | Awaitable[Judgment]"]
T = TypeVar("T")

DROP_QUEUE_FULL: Final = "queue_full"
DROP_BUDGET_CALLS: Final = "budget_calls"
DROP_BUDGET_USD: Final = "budget_usd"
DROP_SHUTDOWN: Final = "shutdown"


def load_evaluator(spec: str) -> Evaluator:
    """The evaluator named ``package.module:function`` (a ``ValueError`` that says
    what is wrong when the spec is malformed, the module cannot be imported or the
    name is not a callable)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"evaluator {spec!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"evaluator {spec!r}: cannot import {module_name!r}: {error}") from error
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"evaluator {spec!r}: {module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise ValueError(f"evaluator {spec!r}: {attribute!r} is not callable")
    evaluator: Evaluator = target
    return evaluator


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """One evaluator call: its judgment, or None with ``status`` ``error``/``timeout``;
    ``start_ns``/``end_ns`` are when the call started and returned (Unix nanoseconds)."""

    context: T
    run: EvaluatedRun
    evaluator: str
    judgment: Judgment | None
    status: str
    detail: str = ""
    start_ns: int = 0
    end_ns: int = 0


def record_outcomes(
    outcomes: Sequence[Outcome[tuple[Run, Verdict]]],
    dropped: dict[str, int],
    sink: MetricSink,
    thresholds: Thresholds,
    labeler: Labeler | None = None,
) -> list[Verdict | None]:
    """Record what a runner returned (:meth:`EvaluationRunner.take`) into ``sink``: the
    drops by reason, each unjudged call, and each judgment with its judged verdict
    (returned in the order of ``outcomes``, ``None`` for an unjudged call). The one
    place the collector, the embedded mode and ``analyze`` turn outcomes into metrics.
    """
    for reason, count in dropped.items():
        record_dropped(sink, reason, count)
    judged: list[Verdict | None] = []
    for outcome in outcomes:
        run, verdict = outcome.context
        if outcome.judgment is None:
            count_unjudged(run, outcome.evaluator, outcome.status, sink, labeler)
            judged.append(None)
        else:
            judged.append(
                accumulate_judgment(
                    run,
                    verdict,
                    outcome.run,
                    outcome.judgment,
                    evaluator=outcome.evaluator,
                    thresholds=thresholds,
                    sink=sink,
                    labeler=labeler,
                )
            )
    return judged


class _Budget:
    """Calls in the last minute and dollars in the last hour. Guarded by the runner's lock."""

    def __init__(
        self, calls_per_minute: float | None, usd_per_hour: float | None, clock: Callable[[], float]
    ) -> None:
        self.calls_per_minute = calls_per_minute
        self.usd_per_hour = usd_per_hour
        self.clock = clock
        self.calls: deque[float] = deque()
        self.spent: deque[tuple[float, float]] = deque()

    def refuse(self) -> str | None:
        """Why a call may not start now, or None (and then the call is counted)."""
        now = self.clock()
        calls = self.calls
        while calls and calls[0] <= now - 60.0:
            calls.popleft()
        spent = self.spent
        while spent and spent[0][0] <= now - 3600.0:
            spent.popleft()
        if self.calls_per_minute is not None and len(calls) >= self.calls_per_minute:
            return DROP_BUDGET_CALLS
        if self.usd_per_hour is not None and math.fsum(c for _, c in spent) >= self.usd_per_hour:
            return DROP_BUDGET_USD
        calls.append(now)
        return None

    def charge(self, cost: float) -> None:
        if cost > 0:
            self.spent.append((self.clock(), cost))


class _DaemonPool:
    """``size`` daemon threads calling sync evaluators: a hung evaluator holds one of
    them (bounded) and never holds up the process at exit, unlike an executor's
    worker, which the interpreter joins."""

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name="llmspans-evaluator", daemon=True)
            for _ in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def call(
        self, loop: asyncio.AbstractEventLoop, function: Evaluator, run: EvaluatedRun
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((loop, future, function, run))
        return future

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, function, run = job
            try:
                result, error = function(run), None
            except BaseException as raised:  # handed to the awaiting call as it is
                result, error = None, raised
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # timed out and cancelled meanwhile
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class EvaluationRunner(Generic[T]):
    """Runs evaluators on sampled runs in a background thread, within bounds.

    ``evaluators`` are (name, callable) pairs, each called once per run; a callable
    may be sync (run in a pool of ``concurrency`` threads) or ``async``. At most
    ``queue_size`` runs wait; at most ``concurrency`` calls run at once; a call past
    ``timeout_s`` counts as ``timeout`` (a sync evaluator that hangs keeps its pool
    thread, so a pool of hung evaluators slows evaluation, never ingestion). With
    ``calls_per_minute`` or ``usd_per_hour`` set, a call over budget is dropped.
    """

    def __init__(
        self,
        evaluators: Sequence[tuple[str, Evaluator]],
        *,
        concurrency: int = 4,
        queue_size: int = 1000,
        timeout_s: float = 30.0,
        calls_per_minute: float | None = None,
        usd_per_hour: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.evaluators = tuple(evaluators)
        self.concurrency = max(1, concurrency)
        self.queue_size = max(1, queue_size)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # guards _queue, _results, _dropped, _budget, _busy
        self._wake = threading.Condition(self._lock)
        self._queue: deque[tuple[T, EvaluatedRun]] = deque()
        self._results: list[Outcome[T]] = []
        self._dropped: dict[str, int] = {}
        self._budget = _Budget(calls_per_minute, usd_per_hour, clock)
        self._busy = 0
        self._closed = False
        self._pool = _DaemonPool(self.concurrency)
        self._loop = asyncio.new_event_loop()
        self._ready: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="llmspans-evaluation", daemon=True)
        self._thread.start()

    # --- the host's side -------------------------------------------------------------

    def submit(self, context: T, run: EvaluatedRun) -> bool:
        """Queue a run for every evaluator; False (and a ``queue_full`` drop) when the
        queue is full or the runner is closed (``shutdown``). Never blocks."""
        with self._lock:
            if self._closed:
                self._drop(DROP_SHUTDOWN)
                return False
            if len(self._queue) >= self.queue_size:
                self._drop(DROP_QUEUE_FULL)
                return False
            self._queue.append((context, run))
        with contextlib.suppress(RuntimeError):  # the loop is closed: close() ran
            self._loop.call_soon_threadsafe(self._signal)
        return True

    def _signal(self) -> None:
        if self._ready is not None:
            self._ready.set()

    def depth(self) -> tuple[int, int]:
        """(runs queued, runs being judged) right now."""
        with self._lock:
            return len(self._queue), self._busy

    def take(self) -> tuple[list[Outcome[T]], dict[str, int]]:
        """The outcomes and drops (by reason) since the last call."""
        with self._lock:
            results, self._results = self._results, []
            dropped, self._dropped = self._dropped, {}
        return results, dropped

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until the queue is empty and no call runs; False on ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._wake.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking runs; what is still queued after ``timeout_s`` is dropped (``shutdown``)."""
        self.drain(timeout_s)
        with self._lock:
            self._closed = True
            for _ in self._queue:
                self._drop(DROP_SHUTDOWN)
            self._queue.clear()
            self._wake.notify_all()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._signal)
        self._thread.join(timeout_s)
        self._pool.stop()

    # --- the worker's side -----------------------------------------------------------

    def _drop(self, reason: str, count: int = 1) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + count

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        ready = self._ready = asyncio.Event()
        while True:
            await slots.acquire()
            ready.clear()
            item, closed = self._next()
            if item is None:
                slots.release()
                if closed:
                    break
                # Woken by submit() and close(); the timeout is a safety net only.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), 0.5)
                continue
            task = asyncio.create_task(self._evaluate(item, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout_s)

    def _next(self) -> tuple[tuple[T, EvaluatedRun] | None, bool]:
        """The next queued run (counted busy), or None and whether the runner closed."""
        with self._lock:
            if not self._queue:
                return None, self._closed
            self._busy += 1
            return self._queue.popleft(), False

    async def _evaluate(self, item: tuple[T, EvaluatedRun], slots: asyncio.Semaphore) -> None:
        context, run = item
        try:
            for name, evaluator in self.evaluators:
                with self._lock:
                    refused = self._budget.refuse()
                    if refused is not None:
                        self._drop(refused)
                        continue
                outcome = await self._call(context, run, name, evaluator)
                with self._lock:
                    if outcome.judgment is not None:
                        self._budget.charge(outcome.judgment.cost_usd)
                    self._results.append(outcome)
        finally:
            slots.release()
            with self._lock:
                self._busy -= 1
                self._wake.notify_all()

    async def _call(
        self, context: T, run: EvaluatedRun, name: str, evaluator: Evaluator
    ) -> Outcome[T]:
        start_ns = time.time_ns()
        try:
            if inspect.iscoroutinefunction(evaluator):
                pending: Awaitable[Any] = evaluator(run)
            else:
                pending = self._pool.call(self._loop, evaluator, run)
            found = await asyncio.wait_for(pending, self.timeout_s)
            if inspect.isawaitable(found):
                found = await asyncio.wait_for(found, self.timeout_s)
        except TimeoutError:
            return Outcome(
                context, run, name, None, VERDICT_TIMEOUT, "timed out", start_ns, time.time_ns()
            )
        except Exception as error:  # an evaluator's fault is counted, never raised
            _log.warning("evaluator %s failed: %s", name, error)
            detail = repr(error)[:500]
            return Outcome(
                context, run, name, None, VERDICT_ERROR, detail, start_ns, time.time_ns()
            )
        end_ns = time.time_ns()
        if not isinstance(found, Judgment):
            detail = f"returned {type(found).__name__}"
            return Outcome(context, run, name, None, VERDICT_ERROR, detail, start_ns, end_ns)
        return Outcome(context, run, name, found, "ok", "", start_ns, end_ns)
