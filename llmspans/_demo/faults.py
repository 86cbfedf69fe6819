"""Fault rates per stage and the seeded draw of one fault per run.

``--faults retrieval=0.1,context_selection=0.05,generation=0.05,action=0.05`` gives each
stage a probability. For every run, one uniform number is drawn per stage (always
all four, so the random stream does not depend on which pipeline the run uses)
and one for the mode. When several stages are drawn, the earliest in pipeline
order wins: that is the stage attribution must report, because a fault in an
earlier stage makes everything after it a consequence.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from llmspans import _attributes as A

#: what ``--faults`` accepts for each stage (``selection`` is short for context_selection)
STAGE_ALIASES: Final = {
    "retrieval": A.STAGE_RETRIEVAL,
    "selection": A.STAGE_CONTEXT_SELECTION,
    "context_selection": A.STAGE_CONTEXT_SELECTION,
    "generation": A.STAGE_GENERATION,
    "action": A.STAGE_ACTION,
}

#: the stage names as the report prints them (``selection`` is accepted as well)
DEFAULT_FAULTS: Final = "retrieval=0.1,context_selection=0.05,generation=0.05,action=0.05"


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: the stage to break and how."""

    stage: str
    mode: str

    def __str__(self) -> str:
        return f"{self.stage}:{self.mode}"


def parse_faults(text: str) -> dict[str, float]:
    """``"retrieval=0.1,selection=0.05"`` -> ``{"retrieval": 0.1, "context_selection": 0.05}``.

    An empty string (or ``none``) means no faults. Raises ``ValueError`` with the
    offending item on an unknown stage, a missing ``=``, or a rate outside [0, 1].
    """
    rates = dict.fromkeys(A.PIPELINE_ORDER, 0.0)
    if text.strip().lower() in ("", "none", "off"):
        return rates
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        stage = STAGE_ALIASES.get(name.strip().lower())
        if stage is None or not sep:
            known = ", ".join(sorted(STAGE_ALIASES))
            raise ValueError(
                f"bad fault {item.strip()!r}: expected STAGE=RATE with STAGE in {known}"
            )
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"bad fault rate in {item.strip()!r}: not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"bad fault rate in {item.strip()!r}: must be between 0 and 1")
        rates[stage] = rate
    return rates


def draw_fault(
    rng: random.Random,
    rates: Mapping[str, float],
    stages: Sequence[str],
    modes: Mapping[str, Sequence[str]],
) -> Fault | None:
    """The fault for one run of a pipeline with ``stages``, or ``None``.

    Consumes exactly five numbers from ``rng`` whatever the outcome.
    """
    draws = [rng.random() for _ in A.PIPELINE_ORDER]
    pick = rng.random()
    for stage, u in zip(A.PIPELINE_ORDER, draws, strict=True):
        if stage in stages and u < rates.get(stage, 0.0) and modes.get(stage):
            options = modes[stage]
            return Fault(stage, options[min(int(pick * len(options)), len(options) - 1)])
    return None
