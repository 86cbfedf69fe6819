"""How the library gets its tracer.

The hot paths talk to ``opentelemetry-api`` only. By default llmspans traces
through the global TracerProvider (whatever the application installed, or
nothing: then every span is a cheap non-recording span). A provider can also be
given to the library explicitly, without touching the global one:
``configure(tracer_provider=...)`` and :mod:`llmspans.testing` use that path.

This module never installs a global provider; only
:func:`llmspans.configure` does, on the user's explicit request.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Tracer, TracerProvider

INSTRUMENTATION_NAME: Final = "llmspans"
INSTRUMENTATION_VERSION: Final = "0.1.0"

#: Context key of the pipeline root span of the current run (set by ``@pipeline``).
RUN_SPAN_KEY: Final = otel_context.create_key("llmspans.run_span")


class _State:
    """The explicit provider (``None``: the global one) and the tracer taken from it."""

    __slots__ = ("provider", "tracer")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        # A ProxyTracer: it follows the global provider, also one installed after import.
        self.tracer: Tracer = trace.get_tracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)


_state: Final = _State()


def get_tracer() -> Tracer:
    """The tracer every llmspans span is started with."""
    return _state.tracer


def get_tracer_provider() -> TracerProvider | None:
    """The provider given to the library explicitly, or ``None`` (global provider)."""
    return _state.provider


def use_tracer_provider(provider: TracerProvider | None) -> TracerProvider | None:
    """Make the library trace through ``provider`` (``None``: the global one again).

    Returns the previously used explicit provider so callers can restore it.
    """
    previous = _state.provider
    if provider is None:
        _state.tracer = trace.get_tracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)
    else:
        _state.tracer = provider.get_tracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)
    _state.provider = provider
    return previous


def current_run_span(ctx: otel_context.Context | None = None) -> Span | None:
    """The root span of the pipeline run the caller is in, or ``None``."""
    value = otel_context.get_value(RUN_SPAN_KEY, ctx)
    return value if isinstance(value, Span) else None
