"""Internals of ``llmspans demo``: run plan and fault injection, a local collector, the report."""
