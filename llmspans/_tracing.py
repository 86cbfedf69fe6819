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

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span, Tracer, TracerProvider

INSTRUMENTATION_NAME: Final = "llmspans"
INSTRUMENTATION_VERSION: Final = "0.1.0"

#: Context key of the pipeline root span of the current run (set by ``@pipeline``).
RUN_SPAN_KEY: Final = otel_context.create_key("llmspans.run_span")


class _State:
    """The explicit provider (``None``: the global one) and the tracer taken from it.

    Following the global provider, ``tracer`` is first a ProxyTracer (it follows a
    provider installed after import) and ``proxied`` is true; once a global provider
    is installed the tracer is taken from it directly, which spares every span the
    proxy's two extra calls. A global provider is installed once per process, so
    the real tracer stays the right one (the proxy itself caches it the same way).
    """

    __slots__ = ("provider", "proxied", "tracer")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer = trace.get_tracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)
        self.proxied = isinstance(self.tracer, trace.ProxyTracer)


_state: Final = _State()


def _resolve_global() -> Tracer:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        _state.tracer = provider.get_tracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)
        _state.proxied = False
    return _state.tracer


def get_tracer() -> Tracer:
    """The tracer every llmspans span is started with."""
    if _state.proxied:
        return _resolve_global()
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
        _state.proxied = isinstance(_state.tracer, trace.ProxyTracer)
    else:
        _state.tracer = provider.get_tracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION)
        _state.proxied = False
    _state.provider = provider
    return previous


def current_run_span(ctx: otel_context.Context | None = None) -> Span | None:
    """The root span of the pipeline run the caller is in, or ``None``."""
    value = otel_context.get_value(RUN_SPAN_KEY, ctx)
    return value if isinstance(value, Span) else None


# --- the context on the hot path ---------------------------------------------------
# The key under which ``trace.set_span_in_context`` stores the span, read once through
# the public API, so a stage builds its whole context (span and our keys) in one copy.
SPAN_KEY: Final = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))


def _runtime_context_var() -> ContextVar[otel_context.Context] | None:
    """The ContextVar behind the default runtime context, or ``None`` for any other one."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_context_var: Final = _runtime_context_var()

#: ``otel_context.get_current``/``attach``/``detach``, bound straight to the ContextVar
#: when the default runtime context is in use (the same operations, without three
#: Python frames per call); the API functions otherwise.
get_current_context: Final[Callable[[], otel_context.Context]] = (
    _context_var.get if _context_var is not None else otel_context.get_current
)
attach_context: Final[Callable[[otel_context.Context], Token[otel_context.Context]]] = (
    _context_var.set if _context_var is not None else otel_context.attach
)
detach_context: Final[Callable[[Token[otel_context.Context]], None]] = (
    _context_var.reset if _context_var is not None else otel_context.detach
)
