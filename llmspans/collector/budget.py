"""Byte budgets: what the collector holds is bounded in bytes, not only in spans.

``limits.max_memory_bytes`` is one total shared by three budgets (docs/conventions.md section 6):

* **receive**: request bodies being read, decompressed and decoded. The HTTP
  receiver reserves a body's bytes as they arrive (a declared ``Content-Length``
  reserves nothing: only what is sent is held), and an OTLP/JSON body
  :data:`JSON_EXPANSION` times its size while it is parsed (Python objects are that
  much larger than the text); the gRPC receiver reserves each message while it is
  decoded. No room: 503 / UNAVAILABLE with a retry delay. A body that could never
  fit: 413 / RESOURCE_EXHAUSTED, before it is read or parsed.
* **queue**: serialised spans waiting in the exporter queues, split evenly between
  the exporters (see :class:`llmspans.collector.forwarding.Exporter`).
* **in flight**: what the assembler holds, read by the processor's admission as
  ``settings.limits.max_inflight_bytes``.

All of it runs on the event loop thread: plain integers, no locks. Reserving and
releasing is two additions per request, so the accounting costs nothing per span.
"""

from __future__ import annotations

import asyncio
from typing import Final

from llmspans.collector._wire import RequestError

__all__ = ["JSON_EXPANSION", "ByteBudget", "Held"]

#: Bytes an OTLP/JSON body is reserved for while parsed, per byte of body: the
#: decoded document (dicts, lists, str objects) plus the protobuf built from it.
JSON_EXPANSION: Final = 8

#: A budget counts as nearly used up above this fraction (``/readyz`` turns 503).
NEAR: Final = 0.9


class ByteBudget:
    """A byte count held against a limit; :meth:`reserve` or refuse, then :meth:`release`."""

    __slots__ = ("_waiters", "limit", "name", "peak", "used")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._waiters: list[asyncio.Future[None]] = []

    def fits(self, size: int) -> bool:
        """Whether ``size`` bytes could ever be held (the budget empty)."""
        return size <= self.limit

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit now; False (nothing taken) if not."""
        used = self.used + size
        if used > self.limit:
            return False
        self.used = used
        self.peak = max(self.peak, used)
        return True

    def release(self, size: int) -> None:
        self.used -= size
        if self._waiters and size > 0:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_reserve(self, size: int, timeout: float) -> bool:
        """Take ``size`` bytes, waiting up to ``timeout`` seconds for them to be
        released by others; False (nothing taken) if they never fit in that time."""
        if self.reserve(size):
            return True
        if not self.fits(size):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                return self.reserve(size)
            if self.reserve(size):
                return True

    @property
    def near(self) -> bool:
        return self.used >= self.limit * NEAR


class Held:
    """The bytes one request holds in a budget; grown as it is read and decoded."""

    __slots__ = ("budget", "retry_after", "size")

    def __init__(self, budget: ByteBudget, retry_after: float) -> None:
        self.budget = budget
        self.size = 0
        self.retry_after = retry_after

    def grow(self, size: int, json_body: bool = False) -> None:
        """Hold ``size`` bytes in all; :class:`RequestError` 413 if they could never
        fit, 503 with a retry delay if they do not fit now."""
        if size <= self.size:
            return
        self.check_fits(size, json_body)
        budget = self.budget
        if not budget.reserve(size - self.size):
            raise RequestError(
                503,
                "memory_limit",
                f"request bodies in progress hold {budget.used} of {budget.limit} bytes; "
                "retry later",
                self.retry_after,
            )
        self.size = size

    def shrink(self, size: int) -> None:
        """Hold only ``size`` bytes from now on (a reservation made for the worst case)."""
        if size < self.size:
            self.budget.release(self.size - size)
            self.size = size

    def check_fits(self, size: int, json_body: bool = False) -> None:
        """:class:`RequestError` 413 when ``size`` bytes could never be held."""
        budget = self.budget
        if not budget.fits(size):
            what = (
                f"an OTLP/JSON body of {size // JSON_EXPANSION} bytes needs about {size} "
                "bytes to parse"
                if json_body
                else f"a request body needing {size} bytes"
            )
            raise RequestError(
                413,
                "too_large",
                f"{what}, more than the receive budget ({budget.limit} bytes); "
                "send smaller batches (or protobuf)",
            )

    def release(self) -> None:
        self.budget.release(self.size)
        self.size = 0
