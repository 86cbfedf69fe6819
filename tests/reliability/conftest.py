"""Fixtures of the reliability and security tests (helpers live in ``support``)."""

from __future__ import annotations

from .support import collector_factory, sink

__all__ = ["collector_factory", "sink"]
