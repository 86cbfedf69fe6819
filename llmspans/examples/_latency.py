"""Simulated service latency, so the demo's per-stage latencies look like a real deployment's.

The local stand-ins (BM25, templates, SQLite) answer in microseconds; a hosted
vector store or model takes milliseconds to seconds. :func:`simulate` sleeps for a
log-normal time around a per-stage median, scaled by :func:`set_scale` (0, the
default, turns it off: tests and plain runs stay instant). The draws come from
their own random generator, so they never change which faults or inputs a seed
selects.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Final

#: median seconds per simulated call, by kind of service
MEDIANS: Final = {
    "vector_store": 0.004,
    "reranker": 0.0008,
    "model": 0.025,
    "database": 0.003,
}
_SIGMA: Final = 0.5


class _State:
    def __init__(self) -> None:
        self.scale = 0.0
        self.rng = random.Random(0)
        self.lock = threading.Lock()  # guards rng


_state: Final = _State()


def set_scale(scale: float, seed: int = 0) -> None:
    """Multiply every simulated latency by ``scale`` (0 disables them)."""
    with _state.lock:
        _state.scale = max(0.0, scale)
        _state.rng = random.Random(seed)


def simulate(kind: str) -> None:
    """Sleep like a call to a service of ``kind`` (see :data:`MEDIANS`) would take."""
    if _state.scale <= 0.0:
        return
    with _state.lock:
        factor = _state.rng.lognormvariate(0.0, _SIGMA)
    time.sleep(MEDIANS.get(kind, 0.001) * factor * _state.scale)
