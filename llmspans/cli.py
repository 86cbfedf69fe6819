"""The ``llmspans`` command: ``llmspans analyze FILE``, ``llmspans eval DATASET``,
``llmspans diverge`` and ``llmspans demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llmspans", description="Stage-level tracing for LLM pipelines."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from llmspans import analyze

    analyze.add_arguments(
        sub.add_parser("analyze", help="per-stage report over recorded OTLP JSON traces")
    )
    from llmspans import diverge

    diverge.add_arguments(
        sub.add_parser("diverge", help="offline or shadow runs against production, per segment")
    )
    from llmspans import demo

    demo.add_arguments(
        sub.add_parser("demo", help="run example pipelines through a local collector")
    )
    from llmspans import offline

    offline.add_arguments(
        sub.add_parser("eval", help="run a pipeline over a labelled set (offline runs)")
    )

    args = parser.parse_args(argv)
    handlers = {
        "analyze": analyze.run,
        "diverge": diverge.run,
        "demo": demo.run,
        "eval": offline.run,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
