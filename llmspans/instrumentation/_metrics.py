"""The GenAI client metrics: ``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``.

Recorded once per model-client operation (a chat, a completion, an embedding) by
every client instrumentor, through the OpenTelemetry metrics API: with no
MeterProvider set, the instruments are the API's proxies and recording does
nothing (an SDK MeterProvider set later takes them over). The instruments are
created once per meter provider, when an instrumentor is enabled, never per call.

Both are histograms with the conventions' advisory bucket boundaries and their
attributes: ``gen_ai.operation.name``, ``gen_ai.provider.name`` (and the older
``gen_ai.system``, which dashboards built on earlier conventions group by),
``gen_ai.request.model``, ``gen_ai.response.model``, ``server.address``,
``server.port``, and ``error.type`` on a failed call. ``gen_ai.client.token.usage``
is recorded twice per call that reported usage, with ``gen_ai.token.type``
``input`` and ``output``.

A client call nested in another instrumented call of the same stage (LiteLLM
calling ``openai``) is not a second operation: the outer call records.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Final

from opentelemetry import metrics
from opentelemetry.environment_variables import OTEL_PYTHON_METER_PROVIDER
from opentelemetry.metrics import Histogram, Meter, MeterProvider
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as attr
from llmspans._version import VERSION

METER_NAME: Final = "llmspans.instrumentation"

#: Advisory boundaries of ``gen_ai.client.operation.duration`` (seconds), from the conventions.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
#: Advisory boundaries of ``gen_ai.client.token.usage``, from the conventions.
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

TOKEN_TYPE: Final = _gen_ai.GEN_AI_TOKEN_TYPE
TOKEN_INPUT: Final = _gen_ai.GenAiTokenTypeValues.INPUT.value
TOKEN_OUTPUT: Final = _gen_ai.GenAiTokenTypeValues.COMPLETION.value

#: The span attributes of a call that are also the metrics' attributes.
METRIC_ATTRIBUTES: Final = frozenset(
    {
        attr.GEN_AI_OPERATION_NAME,
        attr.GEN_AI_PROVIDER_NAME,
        attr.GEN_AI_REQUEST_MODEL,
        attr.GEN_AI_RESPONSE_MODEL,
        attr.SERVER_ADDRESS,
        attr.SERVER_PORT,
    }
)
#: What a call keeps for its metrics besides them: its token counts.
METRIC_FACTS: Final = METRIC_ATTRIBUTES | {
    attr.GEN_AI_USAGE_INPUT_TOKENS,
    attr.GEN_AI_USAGE_OUTPUT_TOKENS,
}


class ClientMetrics:
    """The two histograms of one meter provider (the global one when ``None``)."""

    __slots__ = ("_live", "_provider", "duration", "tokens")

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        self._provider = meter_provider
        self._live = False
        meter: Meter = metrics.get_meter(METER_NAME, VERSION, meter_provider=meter_provider)
        self.duration: Histogram = meter.create_histogram(
            name=gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.tokens: Histogram = meter.create_histogram(
            name=gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )

    @property
    def live(self) -> bool:
        """Whether anything would be recorded: a real provider, given or set globally.

        Checked when a call starts: with no provider, the call keeps nothing for the
        metrics, and a response whose span is not sampled is not read for them. A
        provider once set stays set (the API refuses to replace it), so a yes is
        kept; a no is asked again at the next call, cheaply (``_global_provider``).
        """
        if self._live:
            return True
        provider = self._provider or _global_provider()
        live = provider is not None and type(provider).__name__ not in _NO_OP_PROVIDERS
        self._live = live
        return live

    def record(
        self,
        facts: Mapping[str, AttributeValue],
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """One operation: its duration, and its tokens where it reported them."""
        attributes: dict[str, AttributeValue] = {
            key: value for key, value in facts.items() if key in METRIC_ATTRIBUTES
        }
        provider = attributes.get(attr.GEN_AI_PROVIDER_NAME)
        if provider is not None:
            attributes[attr.GEN_AI_SYSTEM] = provider
        if error is not None:
            attributes[attr.ERROR_TYPE] = type(error).__qualname__
        self.duration.record(seconds, attributes)
        for key, kind in (
            (attr.GEN_AI_USAGE_INPUT_TOKENS, TOKEN_INPUT),
            (attr.GEN_AI_USAGE_OUTPUT_TOKENS, TOKEN_OUTPUT),
        ):
            count = facts.get(key)
            if isinstance(count, int) and not isinstance(count, bool):
                self.tokens.record(count, {**attributes, TOKEN_TYPE: kind})


#: The API's providers that record nothing: the proxy before one is set, and the no-op.
_NO_OP_PROVIDERS: Final = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})
_UNKNOWN: Final = object()


def _global_provider() -> object:
    """The global MeterProvider, ``None`` while none is set.

    ``metrics.get_meter_provider()`` answers the same, but looks up
    ``OTEL_PYTHON_METER_PROVIDER`` in ``os.environ`` on every call while none is set
    (a failed look-up raises and catches a KeyError inside ``os.environ``: about
    8,000 CPU instructions, 3 % of an instrumented call). The API keeps the provider
    in a module global; it is read directly, and the public function is called when
    that global is not where this version expects it, or when the environment names
    a provider the API has yet to load.
    """
    found = getattr(_metrics_api, "_METER_PROVIDER", _UNKNOWN)
    if found is _UNKNOWN or (found is None and _PROVIDER_FROM_ENV):
        return metrics.get_meter_provider()
    return found


_PROVIDER_FROM_ENV: Final = OTEL_PYTHON_METER_PROVIDER in os.environ

_LOCK: Final = threading.Lock()  # guards _BY_PROVIDER
_BY_PROVIDER: dict[int, tuple[MeterProvider | None, ClientMetrics]] = {}


def client_metrics(meter_provider: MeterProvider | None = None) -> ClientMetrics:
    """The instruments of ``meter_provider`` (``None``: the global one), created once."""
    key = id(meter_provider)
    found = _BY_PROVIDER.get(key)
    if found is not None and found[0] is meter_provider:
        return found[1]
    with _LOCK:
        found = _BY_PROVIDER.get(key)
        if found is None or found[0] is not meter_provider:
            found = (meter_provider, ClientMetrics(meter_provider))
            _BY_PROVIDER[key] = found
        return found[1]
