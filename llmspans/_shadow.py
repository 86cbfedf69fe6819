"""Shadow runs: a candidate pipeline on a sampled copy of live input, in the background.

``@llmspans.shadow(candidate, rate=0.1)`` on the live pipeline function: on a
sampled share of calls the arguments are deep-copied before the live call, and
after it the candidate runs on the copy in a background thread, as a run of its
own (a new trace) with ``llmspans.run.source = shadow``. The live result, its
exceptions and its latency are the live function's: the caller never waits for the
candidate and never sees its errors. The backlog is bounded; a sampled call that
finds it full is dropped and counted (:attr:`ShadowStats.dropped`), so a candidate
that hangs costs the live path nothing but its sampled copies.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from llmspans import _attributes as A
from llmspans._logging import log_internal_error
from llmspans._runs import run_source

__all__ = ["ShadowStats", "shadow"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ShadowStats:
    """Counts of one shadowed pipeline (read them from ``live.shadow_stats``)."""

    sampled: int = 0
    completed: int = 0
    failed: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class _Shadow:
    """The bounded backlog and the daemon workers of one shadowed pipeline."""

    def __init__(self, candidate: Callable[..., Any], backlog: int, workers: int) -> None:
        self.candidate = candidate
        self.stats = ShadowStats()
        self.queue: queue.Queue[tuple[tuple[Any, ...], dict[str, Any]]] = queue.Queue(
            maxsize=max(1, backlog)
        )
        self._workers = max(1, workers)
        self._started = False
        self._lock = threading.Lock()  # guards _started

    def submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            if not self._started:
                self._start()
        try:
            self.queue.put_nowait((args, kwargs))
        except queue.Full:
            self.stats.add("dropped")

    def _start(self) -> None:
        self._started = True
        # The workers carry no context of the live call: each shadow run is a trace
        # of its own.
        token = otel_context.attach(otel_context.Context())
        try:
            for index in range(self._workers):
                threading.Thread(
                    target=self._work, name=f"llmspans-shadow-{index}", daemon=True
                ).start()
        finally:
            otel_context.detach(token)

    def _work(self) -> None:
        while True:
            args, kwargs = self.queue.get()
            try:
                with run_source(A.SOURCE_SHADOW):
                    result = self.candidate(*args, **kwargs)
                    if inspect.isawaitable(result):
                        asyncio.run(_awaited(result))
            except Exception:
                self.stats.add("failed")
            else:
                self.stats.add("completed")


async def _awaited(result: Any) -> Any:
    return await result


def shadow(
    candidate: Callable[..., Any],
    rate: float = 0.1,
    *,
    backlog: int = 64,
    workers: int = 1,
    seed: int | None = None,
) -> Callable[[F], F]:
    """Run ``candidate`` on a copy of the input of a ``rate`` share of live calls.

    ``backlog`` bounds the sampled calls waiting for a worker (more are dropped and
    counted), ``workers`` the candidate runs at once. The decorated function gets a
    ``shadow_stats`` attribute (:class:`ShadowStats`). ``seed`` makes the sampling
    repeatable (tests).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"shadow rate must be in [0, 1], got {rate}")
    chooser = random.Random(seed)

    def decorate(live: F) -> F:
        runner = _Shadow(candidate, backlog, workers)

        def copied(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if rate <= 0.0 or chooser.random() >= rate:
                return None
            try:
                return copy.deepcopy((args, kwargs))
            except Exception as exc:
                log_internal_error("shadow.copy", exc)
                return None

        def hand_over(sample: Any) -> None:
            if sample is None:
                return
            runner.stats.add("sampled")
            try:
                runner.submit(*sample)
            except Exception as exc:
                log_internal_error("shadow.submit", exc)

        if inspect.iscoroutinefunction(live):

            @functools.wraps(live)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                sample = copied(args, kwargs)
                try:
                    return await live(*args, **kwargs)
                finally:
                    hand_over(sample)

            async_wrapper.shadow_stats = runner.stats  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(live)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sample = copied(args, kwargs)
            try:
                return live(*args, **kwargs)
            finally:
                hand_over(sample)

        wrapper.shadow_stats = runner.stats  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
