"""The demo's run plan: which pipeline, which input and which fault, for every request.

The plan is a pure function of the seed, the number of requests, the fault rates
and the pipelines' shapes, so a seed reproduces a demo exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from llmspans._demo.faults import Fault, draw_fault


class Example(Protocol):
    """What the demo needs from an example pipeline (see :mod:`llmspans.examples`)."""

    name: str
    stages: tuple[str, ...]
    fault_modes: Mapping[str, tuple[str, ...]]

    def __len__(self) -> int: ...

    def run(self, index: int) -> object: ...


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One request of the demo."""

    seq: int
    pipeline: str
    index: int
    fault: Fault | None


@dataclass(frozen=True, slots=True)
class PipelineShape:
    """The facts of an example the plan depends on."""

    name: str
    size: int
    stages: tuple[str, ...]
    fault_modes: Mapping[str, Sequence[str]]
    weight: float = 1.0


def shape_of(example: Example, weight: float = 1.0) -> PipelineShape:
    return PipelineShape(
        example.name, len(example), tuple(example.stages), example.fault_modes, weight
    )


def make_plan(
    shapes: Sequence[PipelineShape], requests: int, rates: Mapping[str, float], seed: int
) -> list[PlannedRun]:
    """``requests`` runs spread over the pipelines by weight, each with at most one fault."""
    rng = random.Random(seed)
    weights = [s.weight for s in shapes]
    plan: list[PlannedRun] = []
    for seq in range(requests):
        shape = rng.choices(shapes, weights)[0]
        index = rng.randrange(shape.size)
        fault = draw_fault(rng, rates, shape.stages, shape.fault_modes)
        plan.append(PlannedRun(seq, shape.name, index, fault))
    return plan
