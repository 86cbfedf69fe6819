"""Everything llmspans keeps between calls, in one object: :data:`STATE`.

The tracer and the provider it comes from, the content-capture settings, the price
table and the caches derived from it, the kinds of internal errors already
logged, and the patches llmspans applied (auto-instrumentors, thread
propagation). Each module reads and writes its part of it; nothing else is kept
at module level. :meth:`LibraryState.reset` puts all of it back as it was after
import and undoes every patch llmspans applied: the tests call it between tests,
and :meth:`llmspans.Configuration.shutdown` undoes what ``configure()`` changed.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer, TracerProvider

from llmspans._version import NAME, VERSION

if TYPE_CHECKING:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )

    from llmspans.cost import ModelPrice, PriceTable

    Redactor = Any  # llmspans._content.Redactor; a plain alias here avoids the import cycle


class LibraryState:
    """The library's mutable state; one instance, :data:`STATE`.

    A plain slotted class: the hot paths read a few of its fields on every stage
    call, and a slot read is as cheap as a module global.
    """

    __slots__ = (
        "_capture",
        "capture_setting",
        "content_from_env",
        "costs",
        "instrumentors",
        "logged_kinds",
        "max_length",
        "price_lookups",
        "price_table",
        "redactor",
        "run_facts",
        "run_source",
        "runs_sampled",
        "sample_rate",
        "sample_rates",
        "sampled_runs",
        "source_from_env",
        "threading_instrumentor",
        "tracer",
        "tracer_provider",
        "tracer_proxied",
    )

    # --- the tracer (llmspans._tracing) -------------------------------------------
    tracer_provider: TracerProvider | None
    """The provider given to the library explicitly; ``None``: the global one."""
    tracer: Tracer
    tracer_proxied: bool
    """``tracer`` is the global ProxyTracer, to be replaced once a provider is installed."""

    # --- content capture (llmspans._content); ``None``: the environment decides ---
    _capture: bool | None
    capture_setting: bool | None
    """``capture``, else the environment's, as last worked out (one slot read on the
    hot path); ``None``: to be worked out again, after either changed."""
    max_length: int | None
    redactor: Redactor | None
    content_from_env: tuple[bool, int] | None
    """(capture, max_length) as read from the environment, ``None`` before first use."""

    # --- cost (llmspans.cost, llmspans._recording) ----------------------------------
    price_table: PriceTable | None
    """The table in use; ``None`` until the shipped default is first needed."""
    price_lookups: dict[tuple[int, str], tuple[dict[str, ModelPrice], ModelPrice | None]]
    """(id of a table's models dict, model name) -> (that dict, the price found)."""
    costs: dict[tuple[object, ...], tuple[PriceTable, float | None]]
    """(id of the price table, models and token counts) -> (that table, the cost)."""

    # --- runs (llmspans._runs) -------------------------------------------------------
    run_source: str | None
    """``llmspans.run.source`` of the runs this process starts; ``None``: the
    environment (``LLMSPANS_RUN_SOURCE``) decides, else production."""
    source_from_env: tuple[str | None] | None
    """``(LLMSPANS_RUN_SOURCE,)`` as read (once, and again after
    ``reload_environment()``); ``None``: not read yet."""
    run_facts: bool
    """Whether a run's root may have a source or a sampling decision to record: a
    source or sampling configured, or ``LLMSPANS_RUN_SOURCE`` set or not read yet.
    When not (and no segment, labels or source applies), a pipeline's start skips
    its hook. Kept by :meth:`runs_changed`, which every writer of those fields calls."""
    sample_rate: float
    """Share of runs sampled for evaluation (``configure(evaluation_sample_rate=)``)."""
    sample_rates: dict[str, float]
    """Per-segment overrides of ``sample_rate``."""
    sampled_runs: weakref.WeakSet[Span]
    """Root spans of runs sampled for evaluation: their stages record content."""
    runs_sampled: bool
    """Whether a run was sampled since the last reset: until one is, a stage need not
    ask ``sampled_runs`` about its run (``len()`` of a WeakSet is a Python call)."""

    # --- logging once (llmspans._logging) ---------------------------------------------
    logged_kinds: set[str]

    # --- patches llmspans applied, undone by reset() ------------------------------
    instrumentors: dict[str, BaseInstrumentor]
    """Auto-instrumentors enabled by ``llmspans.instrument()``, by name."""
    threading_instrumentor: BaseInstrumentor | None
    """The ``ThreadingInstrumentor`` when llmspans (not the application) instrumented it."""

    def __init__(self) -> None:
        self.instrumentors = {}
        self.threading_instrumentor = None
        self.reset()

    @property
    def capture(self) -> bool | None:
        """Content capture set in code; ``None``: the environment decides."""
        return self._capture

    @capture.setter
    def capture(self, value: bool | None) -> None:
        self._capture = value
        self.capture_setting = None

    def runs_changed(self) -> None:
        """Recompute :attr:`run_facts` after ``run_source``, ``sample_rate``,
        ``sample_rates`` or ``source_from_env`` changed."""
        from_env = self.source_from_env
        self.run_facts = (
            self.run_source is not None
            or self.sample_rate > 0.0
            or bool(self.sample_rates)
            or from_env is None
            or from_env[0] is not None
        )

    def reset(self) -> None:
        """Back to the state after import; every patch llmspans applied is undone."""
        for instrumentor in self.instrumentors.values():
            instrumentor.uninstrument()
        self.instrumentors = {}
        if self.threading_instrumentor is not None:
            self.threading_instrumentor.uninstrument()
            self.threading_instrumentor = None
        self.use_tracer_provider(None)
        self.capture = None
        self.max_length = None
        self.redactor = None
        self.content_from_env = None
        self.price_table = None
        self.price_lookups = {}
        self.costs = {}
        self.logged_kinds = set()
        self.run_source = None
        self.source_from_env = None
        self.sample_rate = 0.0
        self.sample_rates = {}
        self.runs_changed()
        self.sampled_runs = weakref.WeakSet()
        self.runs_sampled = False

    def use_tracer_provider(self, provider: TracerProvider | None) -> None:
        """Trace through ``provider``; ``None``: through the global provider."""
        self.tracer_provider = provider
        if provider is None:
            self.tracer = trace.get_tracer(NAME, VERSION)
            self.tracer_proxied = isinstance(self.tracer, trace.ProxyTracer)
        else:
            self.tracer = provider.get_tracer(NAME, VERSION)
            self.tracer_proxied = False


STATE: Final = LibraryState()
