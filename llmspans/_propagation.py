"""Carrying the stage context into other threads and tasks.

- **asyncio tasks** need nothing: a task copies the context of the code that
  creates it, so a task started inside a stage runs inside that stage (its spans
  are children of the stage span, ``record_*`` helpers find the stage).
  ``asyncio.to_thread`` copies the context as well.
- **ThreadPoolExecutor, threading.Thread, threading.Timer** do not copy the
  context. ``opentelemetry-instrumentation-threading`` (a dependency of llmspans)
  makes them run the work in the OpenTelemetry context of the code that submitted
  or started it. :func:`llmspans.configure` enables it unless
  ``propagate_context=False`` (and its ``shutdown()`` disables it again);
  ``opentelemetry-instrument`` enables it on its own; an application with its own
  TracerProvider enables it with
  ``ThreadingInstrumentor().instrument()``.
- **Anything else** (callbacks run later, other executors):
  wrap the callable with :func:`bind_context` where it is created.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.threading import ThreadingInstrumentor

from llmspans._state import STATE

P = ParamSpec("P")
R = TypeVar("R")

# Guards STATE.threading_instrumentor: configure() and shutdown() may race.
_lock: Final = threading.Lock()


def bind_context(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` bound to the current OpenTelemetry context, wherever and whenever it runs."""
    ctx = otel_context.get_current()

    @functools.wraps(func)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        token = otel_context.attach(ctx)
        try:
            return func(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return bound


def instrument_threads() -> bool:
    """Enable ``ThreadingInstrumentor`` unless it is enabled already.

    Returns ``True`` when this call enabled it; only then does
    :func:`uninstrument_threads` disable it again (an application or
    ``opentelemetry-instrument`` that enabled it keeps it).
    """
    with _lock:
        instrumentor = ThreadingInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            return False
        instrumentor.instrument()
        STATE.threading_instrumentor = instrumentor
        return True


def uninstrument_threads() -> None:
    """Disable ``ThreadingInstrumentor`` if :func:`instrument_threads` enabled it."""
    with _lock:
        instrumentor = STATE.threading_instrumentor
        STATE.threading_instrumentor = None
        if instrumentor is not None:
            instrumentor.uninstrument()
