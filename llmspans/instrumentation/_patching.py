"""The instrumentor base: patch a list of public methods with ``wrapt``, and undo it.

Each library instrumentor lists its ``Patch`` targets; this module does the rest
the same way for all of them: it checks that the library is installed in a
supported version (a debug log and no patching otherwise), wraps each method with
the sync or async wrapper of ``_base`` as soon as the method's module is
imported (at once when it already is), and unwraps on ``uninstrument()``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from abc import abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import wrapt
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Tracer

from llmspans.instrumentation._base import (
    Applies,
    RequestReader,
    ResponseReader,
    async_wrapper,
    get_tracer,
    sync_wrapper,
)
from llmspans.instrumentation._metrics import ClientMetrics, client_metrics

_logger = logging.getLogger("llmspans")


@dataclass(frozen=True, slots=True)
class Patch:
    """One public method to wrap: ``module.Class.method``."""

    module: str
    target: str
    """``"Class.method"``."""
    kind: str
    """Names the call shape in internal-error logs (``"openai.chat"``)."""
    read: RequestReader
    respond: ResponseReader
    is_async: bool = False
    wrapper: Callable[[Tracer], Callable[..., Any]] | None = None
    """A ``wrapt`` wrapper factory used instead of the stage-call wrapper of ``_base``."""
    applies: Applies | None = None
    """Which calls are traced (``None``: all); the others run as if unpatched."""


def sync_and_async(
    module: str,
    owners: tuple[str, str],
    method: str,
    *,
    kind: str,
    read: RequestReader,
    respond: ResponseReader,
    async_respond: ResponseReader | None = None,
    coroutine: bool = True,
) -> tuple[Patch, Patch]:
    """The same method of a client's synchronous and asynchronous class (``owners``).

    ``coroutine``: whether the asynchronous class's method is a coroutine function
    (a ``.stream(...)`` helper returning an async context manager is not).
    """
    sync_owner, async_owner = owners
    return (
        Patch(module, f"{sync_owner}.{method}", kind, read, respond),
        Patch(
            module,
            f"{async_owner}.{method}",
            kind,
            read,
            async_respond or respond,
            is_async=coroutine,
        ),
    )


class PatchingInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A ``BaseInstrumentor`` for one client library, driven by ``patches()``."""

    #: The importable module whose presence means "the library is installed".
    library: ClassVar[str]
    #: The supported versions, as a requirement string (``"openai >= 1.40, < 4"``).
    requirement: ClassVar[str]
    #: Whether its calls are model-client operations that record the
    #: ``gen_ai.client.*`` metrics (``_metrics``); frameworks and vector stores do not.
    records_client_metrics: ClassVar[bool] = False

    _applied: list[Patch]
    _generation: int
    _metrics: ClientMetrics | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,)

    @abstractmethod
    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        """The methods to wrap; each is wrapped when its module is imported.

        Must not import the library itself: instrumenting happens at start-up.
        """

    def available(self) -> bool:
        """Whether the library is installed in a supported version."""
        try:
            if importlib.util.find_spec(self.library) is None:
                return False
        except (ImportError, ValueError):
            return False
        return get_dependency_conflicts([self.requirement]) is None

    def _instrument(self, **kwargs: Any) -> None:
        self._applied = []
        self._generation = getattr(self, "_generation", 0) + 1
        if not self.available():
            conflict = get_dependency_conflicts([self.requirement])
            _logger.debug(
                "%s: not instrumenting (%s)",
                type(self).__name__,
                conflict or f"{self.library} is not installed",
            )
            return
        tracer = get_tracer(kwargs.get("tracer_provider"))
        metrics: ClientMetrics | None = None
        if self.records_client_metrics:
            metrics = client_metrics(kwargs.get("meter_provider"))
        self._metrics = metrics
        for patch in self.patches(tracer):
            wrapt.register_post_import_hook(self._hook(patch, tracer), patch.module)

    def _hook(self, patch: Patch, tracer: Tracer) -> Callable[[ModuleType], None]:
        """Patch when the module is imported (at once if it already is).

        Patching on import keeps application start-up free of the cost of
        importing every installed client library just to wrap it.
        """
        generation = self._generation
        metrics = self._metrics

        def apply(module: ModuleType) -> None:
            if generation != self._generation:  # uninstrumented (or re-instrumented) since
                return
            factory = async_wrapper if patch.is_async else sync_wrapper
            try:
                wrapper = (
                    patch.wrapper(tracer)
                    if patch.wrapper is not None
                    else factory(
                        tracer,
                        patch.kind,
                        patch.read,
                        patch.respond,
                        metrics=metrics,
                        applies=patch.applies,
                    )
                )
                wrapt.wrap_function_wrapper(module, patch.target, wrapper)
            except AttributeError as exc:
                _logger.debug(
                    "%s: %s.%s not patched (%s)",
                    type(self).__name__,
                    patch.module,
                    patch.target,
                    exc,
                )
                return
            self._applied.append(patch)

        return apply

    def _uninstrument(self, **kwargs: Any) -> None:
        self._generation = getattr(self, "_generation", 0) + 1
        for patch in getattr(self, "_applied", []):
            owner_name, _, method = patch.target.rpartition(".")
            owner: Any = sys.modules[patch.module]
            for part in filter(None, owner_name.split(".")):  # "" for a module function
                owner = getattr(owner, part)
            unwrap(owner, method)
        self._applied = []
