"""``llmspans-collector --config FILE`` (also ``python -m collector --config FILE``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from llmspans.collector.config import ENV_PREFIX, load_settings
from llmspans.collector.service import run


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llmspans-collector",
        description=(
            "Receives OTLP traces, attributes each failed pipeline run to the stage that "
            "caused it, serves the metrics on /metrics and forwards the enriched traces. "
            f"Every config key can be overridden with {ENV_PREFIX}SECTION__KEY."
        ),
    )
    parser.add_argument("--config", help="YAML configuration file (collector.example.yaml)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use the standard asyncio event loop"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
    except (OSError, ValueError, ValidationError) as error:
        print(f"llmspans-collector: invalid configuration: {error}", file=sys.stderr)
        return 2
    factory = None if args.no_uvloop else _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
