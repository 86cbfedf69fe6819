"""Fixtures of the collector tests (the helpers live in collector_support.py)."""

from collector_support import loop_thread, sink, start_collector, tmp_file

__all__ = ["loop_thread", "sink", "start_collector", "tmp_file"]
