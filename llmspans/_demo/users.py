"""Simulated users of the support bot: what they do with each reply.

Feedback is how production teams see the failures no rule catches (an answer that
was supported but unhelpful). The draws come from their own seeded generator, so
they never change the run plan.
"""

from __future__ import annotations

import random


def simulated_feedback(rng: random.Random, served: bool) -> tuple[str, float | None]:
    """``(kind, edit_ratio)`` for one reply; ``served`` is whether the user got an answer.

    Always consumes two numbers from ``rng``.
    """
    u, ratio = rng.random(), rng.random()
    if served:
        if u < 0.72:
            return "accept", None
        if u < 0.92:
            return "edit", round(0.05 + 0.55 * ratio, 2)
        return "reject", None
    return ("bypass", None) if u < 0.7 else ("reject", None)
