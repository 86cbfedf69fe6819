"""Fault injection hooks for the demo: break one stage of one run on purpose.

A fault is ``(stage, mode)``, e.g. ``("retrieval", "empty")``. The demo enters
:func:`injecting` around one pipeline call; the stage code asks
:func:`injected` whether it should misbehave and how. Outside :func:`injecting`
every stage behaves normally, so the examples read as ordinary application code
with one clearly marked hook per stage.

Each mode produces the signal that docs/conventions.md section 5 attributes to its stage:

- retrieval: ``error`` (raises), ``empty`` (no documents), ``wrong_documents``
  (none of the relevant ones);
- context_selection: ``error``, ``empty`` (nothing selected), ``dropped_relevant``;
- generation: ``error``, ``refused``, ``unsupported_citation`` (cites a document
  it was not shown), ``invalid_output`` (fails the app's validation);
- action: ``error``, ``no_write`` (reports success but writes nothing, so the
  execution-based check fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from opentelemetry import trace

#: attribute on the pipeline span naming the injected fault: the demo's ground truth
INJECTED_FAULT_ATTRIBUTE: Final = "llmspans_examples.injected_fault"

Fault = tuple[str, str]

_active: ContextVar[Fault | None] = ContextVar("llmspans_examples_fault", default=None)


class InjectedFault(RuntimeError):
    """Raised by a stage whose injected fault mode is ``error``."""


@contextmanager
def injecting(fault: Fault | None) -> Iterator[None]:
    """Make ``fault`` active for the code run inside the block."""
    token = _active.set(fault)
    try:
        yield
    finally:
        _active.reset(token)


def injected(stage: str) -> str | None:
    """The fault mode to apply in ``stage`` right now, or ``None``."""
    fault = _active.get()
    if fault is None or fault[0] != stage:
        return None
    return fault[1]


def raise_if_error(stage: str) -> None:
    """Raise :class:`InjectedFault` when ``stage`` has the injected mode ``error``."""
    if injected(stage) == "error":
        raise InjectedFault(f"injected {stage} failure")


def note_injected_fault() -> None:
    """Record the active fault on the current (pipeline) span, as ground truth for the demo."""
    fault = _active.get()
    if fault is not None:
        trace.get_current_span().set_attribute(INJECTED_FAULT_ATTRIBUTE, ":".join(fault))
