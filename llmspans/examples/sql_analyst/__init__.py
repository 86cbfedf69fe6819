"""SQL analyst: answer business questions with generated SQL, checked against reference queries."""

from .pipeline import SqlAnalyst

__all__ = ["SqlAnalyst"]
