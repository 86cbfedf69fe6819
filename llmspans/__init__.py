"""llmspans: stage-level tracing for LLM pipelines.

Decorate the stages of a pipeline, and every run tells which stage broke::

    import llmspans

    llmspans.configure(service_name="support-bot")

    @llmspans.retrieval(data_source="faq")
    def search(query: str) -> list[Doc]: ...

    @llmspans.pipeline("support_answer")
    def handle(question: str) -> str: ...

See ``docs/stages.md`` for the stages, what each records, and the helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmspans._configure import Configuration, configure
from llmspans._content import set_redactor
from llmspans._decorators import action, context_selection, generation, pipeline, retrieval
from llmspans._feedback import RunRef, current_run, feedback
from llmspans._propagation import bind_context
from llmspans._recording import (
    record_action,
    record_context,
    record_generation,
    record_retrieval,
    set_outcome,
)
from llmspans._runs import run_source, set_segment
from llmspans._shadow import ShadowStats, shadow
from llmspans._version import VERSION
from llmspans.cost import PriceTable, get_price_table, set_price_table

if TYPE_CHECKING:
    from llmspans.instrumentation import instrument

__version__ = VERSION

__all__ = [
    "Configuration",
    "PriceTable",
    "RunRef",
    "ShadowStats",
    "__version__",
    "action",
    "bind_context",
    "configure",
    "context_selection",
    "current_run",
    "feedback",
    "generation",
    "get_price_table",
    "instrument",
    "pipeline",
    "record_action",
    "record_context",
    "record_generation",
    "record_retrieval",
    "retrieval",
    "run_source",
    "set_outcome",
    "set_price_table",
    "set_redactor",
    "set_segment",
    "shadow",
]


def __getattr__(name: str) -> Any:
    # Auto-instrumentation pulls in optional client libraries: import it on first use.
    if name == "instrument":
        from llmspans.instrumentation import instrument

        return instrument
    raise AttributeError(f"module 'llmspans' has no attribute {name!r}")
