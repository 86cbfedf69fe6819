"""The ``llmspans`` logger, and logging each kind of problem once.

A failure inside the library (a broken extraction, an exporter quirk, a bug of
ours) must never reach the user's code: the caller catches it, calls
:func:`log_internal_error`, and the user's call proceeds, untraced if need be.
Each kind of failure (and each kind of usage warning, :func:`warn_once`) is logged
once per process, so a hot path that fails on every call does not flood the logs;
the kinds already logged are kept in ``STATE.logged_kinds``.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from llmspans._state import STATE

logger: Final = logging.getLogger("llmspans")

# Guards STATE.logged_kinds, shared by every thread.
_lock: Final = threading.Lock()


def _first_time(kind: str) -> bool:
    with _lock:
        seen = STATE.logged_kinds
        if kind in seen:
            return False
        seen.add(kind)
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
