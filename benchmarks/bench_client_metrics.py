"""What the ``gen_ai.client.*`` metrics add to one instrumented model-client call.

The instrumentors' own wrapper (``llmspans.instrumentation._base.sync_wrapper``)
around a client method that returns at once, reading a response with model and
token usage, traced by an SDK TracerProvider without exporter. Four set-ups:

- ``off``: the wrapper without metrics (as before they existed);
- ``no provider``: metrics through the global API with no MeterProvider set (the
  default for an application that does not use metrics);
- ``no-op provider``: an explicit ``NoOpMeterProvider``;
- ``sdk provider``: an SDK MeterProvider with an in-memory reader (recording).

Prints microseconds per call (best of ``--repeat`` interleaved runs of ``--calls``
calls each) and the difference to ``off``. With ``--instructions``, counts CPU
instructions per call instead, which a busy machine does not move: each set-up runs
in a child under ``valgrind --tool=cachegrind --cache-sim=no``, once with
``--calls`` calls and once with none (both after the same warm-up), and

    instructions per call = (I(calls) - I(none)) / calls.

    python benchmarks/bench_client_metrics.py [--calls 20000] [--repeat 5]
    python benchmarks/bench_client_metrics.py --instructions [--calls 2000]
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from typing import Any

from _common import count_instructions
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from llmspans import _attributes as attr
from llmspans.instrumentation._base import Request, StageCall, get_tracer, sync_wrapper
from llmspans.instrumentation._metrics import ClientMetrics


def _read(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return Request(
        stage=attr.STAGE_GENERATION,
        name="chat gpt-4o-mini",
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT,
            attr.GEN_AI_PROVIDER_NAME: "openai",
            attr.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            attr.SERVER_ADDRESS: "api.openai.com",
            attr.SERVER_PORT: 443,
        },
    )


def _respond(call: StageCall, result: Any) -> Any:
    # Tokens set directly: the price look-up of record_usage would dwarf what is measured.
    call.set(attr.GEN_AI_RESPONSE_MODEL, "gpt-4o-mini-2024-07-18")
    call.set(attr.GEN_AI_USAGE_INPUT_TOKENS, 1200)
    call.set(attr.GEN_AI_USAGE_OUTPUT_TOKENS, 300)
    return result


def _client() -> str:
    return "ok"


def _run(wrapper: Callable[..., Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        wrapper(_client, None, (), {})
    return (time.perf_counter() - started) / calls * 1e6


SETUPS = ("off", "no provider", "no-op provider", "sdk provider")


def _wrappers() -> dict[str, Callable[..., Any]]:
    tracer = get_tracer(TracerProvider())
    setups: dict[str, ClientMetrics | None] = {
        "off": None,
        "no provider": ClientMetrics(None),
        "no-op provider": ClientMetrics(NoOpMeterProvider()),
        "sdk provider": ClientMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()])),
    }
    wrappers = {
        name: sync_wrapper(tracer, "bench", _read, _respond, metrics=metrics)
        for name, metrics in setups.items()
    }
    for wrapper in wrappers.values():  # warm-up: first-call caches, lazy imports
        _run(wrapper, 200)
    return wrappers


def _child(setup: str, calls: int) -> None:
    """Runs under valgrind: the warm-up of every set-up, then ``calls`` calls of one."""
    wrappers = _wrappers()
    if calls:
        _run(wrappers[setup], calls)


def _instructions(setup: str, calls: int) -> int:
    return count_instructions([__file__, "--child", setup, "--calls", str(calls)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child is not None:
        _child(options.child, options.calls)
        return
    if options.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
        counts = {
            setup: (_instructions(setup, options.calls) - _instructions(setup, 0)) / options.calls
            for setup in SETUPS
        }
        for name, value in counts.items():
            print(f"{name:>15}: {value:9.0f} instructions/call ({value - counts['off']:+.0f})")
        return
    wrappers = _wrappers()
    # Interleaved rounds, best of each: a busy machine slows all set-ups alike.
    results = dict.fromkeys(wrappers, float("inf"))
    for _ in range(options.repeat):
        for name, wrapper in wrappers.items():
            results[name] = min(results[name], _run(wrapper, options.calls))
    base = results["off"]
    for name, value in results.items():
        print(f"{name:>15}: {value:7.2f} us/call ({value - base:+.2f} us)")


if __name__ == "__main__":
    main()
