"""Carrying the stage context into other threads and tasks.

- **asyncio tasks** need nothing: a task copies the context of the code that
  creates it, so a task started inside a stage runs inside that stage (its spans
  are children of the stage span, ``record_*`` helpers find the stage).
  ``asyncio.to_thread`` copies the context as well.
- **ThreadPoolExecutor** does not copy the context. :func:`instrument_thread_pools`
  (called by :func:`llmspans.configure` unless ``propagate_context=False``) makes
  ``ThreadPoolExecutor.submit`` (and so ``map`` and ``loop.run_in_executor``) run
  the work in the OpenTelemetry context of the submitting code. Only the
  OpenTelemetry context travels, attached for the duration of the work item and
  detached after it, as opentelemetry-instrumentation-threading does; other
  context variables are untouched.
- **Anything else** (``threading.Thread``, callbacks run later):
  wrap the callable with :func:`bind_context` where it is created.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, ParamSpec, TypeVar

from opentelemetry import context as otel_context

P = ParamSpec("P")
R = TypeVar("R")

# Guards the patch state: the original ``submit`` while the patch is installed.
_lock: Final = threading.Lock()
_ORIGINAL_ATTR: Final = "_llmspans_original_submit"


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


def _run_in_context(
    ctx: otel_context.Context, func: Callable[..., R], /, *args: Any, **kwargs: Any
) -> R:
    token = otel_context.attach(ctx)
    try:
        return func(*args, **kwargs)
    finally:
        otel_context.detach(token)


def instrument_thread_pools() -> None:
    """Make ``ThreadPoolExecutor.submit`` carry the submitter's OpenTelemetry context.

    Idempotent; undone by :func:`uninstrument_thread_pools`.
    """
    with _lock:
        if hasattr(ThreadPoolExecutor, _ORIGINAL_ATTR):
            return
        original: Callable[..., Future[Any]] = ThreadPoolExecutor.submit

        @functools.wraps(original)
        def submit(
            self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
        ) -> Future[Any]:
            ctx = otel_context.get_current()
            if not ctx:
                return original(self, fn, *args, **kwargs)
            return original(self, _run_in_context, ctx, fn, *args, **kwargs)

        setattr(ThreadPoolExecutor, _ORIGINAL_ATTR, original)
        # Patching a stdlib method on purpose; its generic signature cannot be restated.
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]


def uninstrument_thread_pools() -> None:
    """Restore the original ``ThreadPoolExecutor.submit``."""
    with _lock:
        original = ThreadPoolExecutor.__dict__.get(_ORIGINAL_ATTR)
        if original is None:
            return
        ThreadPoolExecutor.submit = original  # type: ignore[method-assign]
        delattr(ThreadPoolExecutor, _ORIGINAL_ATTR)


def thread_pools_instrumented() -> bool:
    return _ORIGINAL_ATTR in ThreadPoolExecutor.__dict__
