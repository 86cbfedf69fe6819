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

from typing import Final

__all__ = ["JSON_EXPANSION", "ByteBudget"]

#: Bytes an OTLP/JSON body is reserved for while parsed, per byte of body: the
#: decoded document (dicts, lists, str objects) plus the protobuf built from it.
JSON_EXPANSION: Final = 8

#: A budget counts as nearly used up above this fraction (``/readyz`` turns 503).
NEAR: Final = 0.9


class ByteBudget:
    """A byte count held against a limit; :meth:`reserve` or refuse, then :meth:`release`."""

    __slots__ = ("limit", "name", "peak", "used")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.used = 0
        self.peak = 0

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

    @property
    def near(self) -> bool:
        return self.used >= self.limit * NEAR


