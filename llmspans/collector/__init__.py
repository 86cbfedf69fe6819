"""The llmspans collector: OTLP in, whole-trace attribution, metrics and enriched traces out.

Run it with ``llmspans-collector --config collector.yaml``; docs/collector.md
describes every key, the memory model and how to scale it out.
"""

from __future__ import annotations

from llmspans.collector.config import CollectorSettings, load_settings

__all__ = ["CollectorSettings", "load_settings"]
