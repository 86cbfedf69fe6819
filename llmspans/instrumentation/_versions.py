"""The instrumentors' version policy: a new major is instrumented with a warning, not skipped.

Each instrumentor declares two things about its library:

- ``requirement``: the *floor*, the oldest release whose public API it uses
  (``"anthropic >= 0.34"``). It has no upper bound, so a release the project has
  not seen yet is instrumented (by ``llmspans.instrument()`` and by
  ``opentelemetry-instrument``, which reads the same requirement through
  ``instrumentation_dependencies()``).
- ``tested``: the versions the test suite has run against (``"< 3"``). A newer
  installed release is instrumented all the same, with one warning on the
  ``llmspans`` logger that names the version, what was tested and how to turn
  the instrumentor off.

A library that is not installed is skipped with a debug log; one installed below
the floor is skipped with a warning that says which version was found and which
is needed, so no skip is silent or mislabelled.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

from opentelemetry.trace import Tracer
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from llmspans._logging import warn_once
from llmspans.instrumentation._patching import Patch, PatchingInstrumentor


def installed_version(requirement: str) -> str | None:
    """The installed version of the distribution ``requirement`` names, or ``None``."""
    try:
        return importlib.metadata.version(Requirement(requirement).name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unavailable_reason(instrumentor: PatchingInstrumentor) -> str | None:
    """Why ``instrumentor`` cannot instrument its library here, or ``None`` when it can.

    The reason names the installed version and the requirement when the library
    is installed but too old, so a skip is never reported as "not installed".
    """
    try:
        if importlib.util.find_spec(instrumentor.library) is None:
            return f"{instrumentor.library} is not installed"
    except (ImportError, ValueError):
        return f"{instrumentor.library} is not installed"
    if instrumentor.available():
        return None
    version = installed_version(instrumentor.requirement)
    name = Requirement(instrumentor.requirement).name
    if version is None:
        return f"{instrumentor.library} is importable but no {name} distribution is installed"
    return f"{name} {version} is installed; llmspans supports {instrumentor.requirement}"


def is_installed(instrumentor: PatchingInstrumentor) -> bool:
    """Whether the library is importable at all (whatever its version)."""
    try:
        return importlib.util.find_spec(instrumentor.library) is not None
    except (ImportError, ValueError):
        return False


class VersionedInstrumentor(PatchingInstrumentor):
    """A ``PatchingInstrumentor`` that warns, once, when it instruments an untested release."""

    #: The versions the test suite ran against, as a specifier (``"< 3"``).
    tested: ClassVar[str]

    def untested_version(self) -> str | None:
        """The installed version when it is outside ``tested``, else ``None``."""
        version = installed_version(self.requirement)
        if version is None:
            return None
        try:
            inside = Version(version) in SpecifierSet(self.tested, prereleases=True)
        except InvalidVersion:
            return None
        return None if inside else version

    def _hook(self, patch: Patch, tracer: Tracer) -> Callable[[ModuleType], None]:
        """The base hook, plus a warning when an untested release lacks a patched method.

        A method that a new release renamed or removed leaves that call untraced:
        it is named, not skipped in silence.
        """
        apply = super()._hook(patch, tracer)
        generation = self._generation

        def checked(module: ModuleType) -> None:
            before = len(self._applied)
            apply(module)
            if generation != self._generation or len(self._applied) != before:
                return
            version = self.untested_version()
            if version is not None:
                name = Requirement(self.requirement).name
                warn_once(
                    f"unpatched.{patch.module}.{patch.target}",
                    f"{type(self).__name__}: {name} {version} has no {patch.module}."
                    f"{patch.target}; those calls are not traced",
                )

        return checked

    def _instrument(self, **kwargs: Any) -> None:
        if self.available():
            version = self.untested_version()
            if version is not None:
                name = Requirement(self.requirement).name
                warn_once(
                    f"untested-version.{name}",
                    f"{type(self).__name__}: {name} {version} is newer than the versions "
                    f"llmspans was tested with ({name} {self.tested}); instrumenting it "
                    "anyway. If its spans are wrong or missing, report it, and pin "
                    f"{name} or disable this instrumentor meanwhile",
                )
        super()._instrument(**kwargs)
