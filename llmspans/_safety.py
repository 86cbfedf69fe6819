"""The one boundary where errors of llmspans itself are caught.

A failure inside the library (a broken extraction, an exporter quirk, a bug of
ours) must never reach the user's code: the caller catches it, calls
:func:`log_internal_error`, and the user's call proceeds, untraced if need be.
Each kind of failure is logged once per process on the ``llmspans`` logger, so a
hot path that fails on every call does not flood the logs.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

logger: Final = logging.getLogger("llmspans")

# Guards _seen: kinds already logged (a set shared by every thread).
_lock: Final = threading.Lock()
_seen: set[str] = set()


def _first_time(kind: str) -> bool:
    with _lock:
        if kind in _seen:
            return False
        _seen.add(kind)
        return True


def log_internal_error(kind: str, exc: BaseException) -> None:
    """Log an internal failure of kind ``kind`` once, with its traceback; never raises."""
    try:
        if _first_time(kind):
            logger.warning(
                "llmspans internal error (%s); the call proceeds without this data. "
                "Further errors of this kind are not logged.",
                kind,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
    except Exception:  # logging must not fail the caller either
        return


def warn_once(kind: str, message: str) -> None:
    """Log a usage warning (e.g. a ``record_*`` call outside its stage) once per kind."""
    try:
        if _first_time(kind):
            logger.warning("%s (logged once)", message)
    except Exception:
        return


def reset_logged_kinds() -> None:
    """Forget which kinds were logged (for tests)."""
    with _lock:
        _seen.clear()
