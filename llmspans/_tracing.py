"""How the library gets its tracer.

The hot paths talk to ``opentelemetry-api`` only. By default llmspans traces
through the global TracerProvider (whatever the application installed, or
nothing: then every span is a cheap non-recording span). A provider can also be
given to the library explicitly, without touching the global one:
``configure(tracer_provider=...)`` and :mod:`llmspans.testing` use that path.

This module never installs a global provider; only
:func:`llmspans.configure` does, on the user's explicit request.

Following the global provider, the tracer (``STATE.tracer``) is first a
ProxyTracer (it follows a provider installed after import); once a global
provider is installed the tracer is taken from it directly, which spares every
span the proxy's two extra calls. A global provider is installed once per
process, so the real tracer stays the right one (the proxy caches it the same way).
"""

from __future__ import annotations

from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Tracer, TracerProvider

from llmspans._state import STATE
from llmspans._version import NAME, VERSION

INSTRUMENTATION_NAME: Final = NAME
INSTRUMENTATION_VERSION: Final = VERSION


def resolve_global_tracer() -> Tracer:
    """The tracer of the global provider once one is installed, else the proxy."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        STATE.tracer = provider.get_tracer(NAME, VERSION)
        STATE.tracer_proxied = False
    return STATE.tracer


def get_tracer() -> Tracer:
    """The tracer every llmspans span is started with."""
    if STATE.tracer_proxied:
        return resolve_global_tracer()
    return STATE.tracer


def get_tracer_provider() -> TracerProvider | None:
    """The provider given to the library explicitly, or ``None`` (global provider)."""
    return STATE.tracer_provider


def use_tracer_provider(provider: TracerProvider | None) -> TracerProvider | None:
    """Make the library trace through ``provider`` (``None``: the global one again).

    Returns the previously used explicit provider so callers can restore it.
    """
    previous = STATE.tracer_provider
    STATE.use_tracer_provider(provider)
    return previous
