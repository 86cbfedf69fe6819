"""``llmspans-collector --config FILE`` (also ``python -m llmspans.collector --config FILE``).

Exit codes: 0 after a clean shutdown, 2 for a configuration it cannot run with
(one line on stderr: invalid YAML or keys, an endpoint that is not ``host:port``,
a port in use, an exporter file that cannot be opened, an empty bearer token).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from llmspans.collector.config import ENV_PREFIX, ConfigError, load_settings
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
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=(
            "YAML configuration file; relative paths in it are resolved against its "
            "directory. Without it the built-in defaults apply: OTLP/gRPC on "
            "127.0.0.1:4317, OTLP/HTTP on 127.0.0.1:4318, /metrics on 127.0.0.1:9464, "
            "no exporters (collector/collector.example.yaml in the source repository "
            "lists every key with its default)"
        ),
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG, INFO, WARNING or ERROR, in any case (default INFO)",
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
        factory = None if args.no_uvloop else _loop_factory()
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run(settings))
    except ConfigError as error:
        print(f"llmspans-collector: invalid configuration: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
