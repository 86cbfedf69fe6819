"""Auto-instrumentation: the client libraries people already use emit stage spans.

``llmspans.instrument()`` enables every instrumentor whose library is installed
(or the named ones); each is also an OpenTelemetry ``BaseInstrumentor``
registered under the ``opentelemetry_instrumentor`` entry point, so
``opentelemetry-instrument python app.py`` picks them up with no code change.
See docs/auto-instrumentation.md for the support matrix and the no-duplicate rule.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Final

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from llmspans._state import STATE
from llmspans._tracing import get_tracer_provider
from llmspans.instrumentation._patching import PatchingInstrumentor

__all__ = ["INSTRUMENTORS", "instrument", "uninstrument"]

_logger = logging.getLogger("llmspans")

#: Instrumentor name -> ``module:Class`` (the same classes as the entry points).
INSTRUMENTORS: Final[dict[str, str]] = {
    "openai": "llmspans.instrumentation.openai:OpenAIInstrumentor",
    "anthropic": "llmspans.instrumentation.anthropic:AnthropicInstrumentor",
    "langchain": "llmspans.instrumentation.langchain:LangChainInstrumentor",
    "llama_index": "llmspans.instrumentation.llama_index:LlamaIndexInstrumentor",
    "chromadb": "llmspans.instrumentation.chromadb:ChromaInstrumentor",
    "qdrant": "llmspans.instrumentation.qdrant:QdrantInstrumentor",
    "litellm": "llmspans.instrumentation.litellm:LiteLLMInstrumentor",
    "bedrock": "llmspans.instrumentation.bedrock:BedrockInstrumentor",
    "google_genai": "llmspans.instrumentation.google_genai:GoogleGenAIInstrumentor",
}

# Guards STATE.instrumentors (the instrumentors enabled here, by name): instrument()
# and uninstrument() may race at startup and shutdown.
_lock: Final = threading.Lock()


def _load(name: str) -> PatchingInstrumentor:
    module_name, _, class_name = INSTRUMENTORS[name].partition(":")
    cls: type[PatchingInstrumentor] = getattr(importlib.import_module(module_name), class_name)
    return cls()


def _log_skip(name: str, instrumentor: PatchingInstrumentor) -> None:
    """Say why ``name`` is skipped: debug when its library is absent, a warning when too old."""
    from llmspans.instrumentation._versions import is_installed, unavailable_reason

    reason = unavailable_reason(instrumentor) or "not available"
    level = logging.WARNING if is_installed(instrumentor) else logging.DEBUG
    _logger.log(level, "llmspans.instrument: %s skipped (%s)", name, reason)


def instrument(
    *names: str,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> list[str]:
    """Enable the named instrumentors (default: all); return the names now enabled.

    A library that is not installed is skipped with a debug log; one installed
    below the supported floor is skipped with a warning that names both versions.
    A release newer than those tested is instrumented, with a warning. Spans go
    to ``tracer_provider``, else to the provider given to
    ``llmspans.configure(tracer_provider=...)``, else to the global one. The model
    clients' ``gen_ai.client.*`` metrics go to ``meter_provider``, else to the global
    one (nothing is recorded while none is set).
    Calling it again for an enabled instrumentor changes nothing.

    Raises:
        ValueError: a name that is not one of ``INSTRUMENTORS``.
    """
    unknown = [name for name in names if name not in INSTRUMENTORS]
    if unknown:
        raise ValueError(f"unknown instrumentor(s) {unknown}; known: {sorted(INSTRUMENTORS)}")
    if tracer_provider is None:
        tracer_provider = get_tracer_provider()
    enabled: list[str] = []
    with _lock:
        for name in names or tuple(INSTRUMENTORS):
            if name in STATE.instrumentors:
                enabled.append(name)
                continue
            instrumentor = _load(name)
            if not instrumentor.available():
                _log_skip(name, instrumentor)
                continue
            if instrumentor.is_instrumented_by_opentelemetry:
                # Already enabled elsewhere (opentelemetry-instrument): keep its provider.
                enabled.append(name)
                continue
            instrumentor.instrument(
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                skip_dep_check=True,
            )
            STATE.instrumentors[name] = instrumentor
            enabled.append(name)
    return enabled


def uninstrument(*names: str) -> None:
    """Undo ``instrument()`` for the named instrumentors (default: every enabled one)."""
    with _lock:
        for name in names or tuple(STATE.instrumentors):
            instrumentor = STATE.instrumentors.pop(name, None)
            if instrumentor is not None:
                instrumentor.uninstrument()
