"""Proxies around streamed results: the call's span ends exactly once, whatever the consumer does.

A streamed client call returns before the model has answered. Its span must cover
the stream and end exactly once -- on exhaustion, on an error while iterating, on
``close()``, on context-manager exit, or when the stream is garbage-collected after
an early ``break`` -- carrying the usage seen so far. The proxies below are
``wrapt.ObjectProxy`` objects, so everything else (``.response``, helper methods,
``isinstance`` checks) behaves as on the real stream.

Facts arriving in chunks are written onto the span as they arrive
(``observe``); facts only available at the end are read by ``on_end``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

import wrapt

from llmspans._logging import log_internal_error
from llmspans.instrumentation._base import StageCall

Observe = Callable[[StageCall, Any], None]
OnEnd = Callable[[StageCall, Any], None]
"""Reads final facts from the stream object (``subject``) when the call ends."""


def _guarded(kind: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:
        log_internal_error(kind, exc)


class Ending:
    """The end-of-call logic shared by the proxies of one call: runs exactly once."""

    def __init__(self, call: StageCall, kind: str, on_end: OnEnd | None = None) -> None:
        call.deferred = True
        self.call = call
        self.kind = kind
        self.on_end = on_end
        self.subject: Any = None

    def end(self, error: BaseException | None = None) -> None:
        if self.call.ended:
            return
        on_end = self.on_end
        if on_end is not None:
            _guarded(f"{self.kind}.stream_end", lambda: on_end(self.call, self.subject))
        _guarded(f"{self.kind}.stream_end", lambda: self.call.end(error))

    def scope(self, activate: bool) -> AbstractContextManager[None]:
        return self.call.activate() if activate else nullcontext()


class _EndingProxy(wrapt.ObjectProxy[Any]):
    """A proxy whose call's span ends, at the latest, when the proxy is garbage-collected."""

    def __init__(self, wrapped: Any, ending: Ending) -> None:
        super().__init__(wrapped)
        self._self_ending = ending

    def __del__(self) -> None:
        ending = getattr(self, "_self_ending", None)
        if ending is not None:
            ending.end()


class _StreamProxy(_EndingProxy):
    """What the synchronous and asynchronous stream proxies share: set-up and chunk reading."""

    def __init__(
        self,
        wrapped: Any,
        ending: Ending,
        observe: Observe | None = None,
        *,
        activate: bool = False,
    ) -> None:
        super().__init__(wrapped, ending)
        if ending.subject is None:
            ending.subject = wrapped
        self._self_observe = observe
        self._self_activate = activate

    def _observed(self, item: Any) -> Any:
        observe = self._self_observe
        if observe is not None:
            ending: Ending = self._self_ending
            _guarded(f"{ending.kind}.stream_chunk", lambda: observe(ending.call, item))
        return item


class SyncStreamProxy(_StreamProxy):
    """A synchronous stream (or generator) whose iteration reports to one call's span.

    With ``activate``, each step runs with the call's span current, so instrumented
    calls made lazily inside a generator (LangChain's ``stream``) nest and enrich.
    """

    def __iter__(self) -> SyncStreamProxy:
        return self

    def _step(self) -> Any:
        """The next item of the wrapped stream."""
        return next(self.__wrapped__)

    def __next__(self) -> Any:
        ending: Ending = self._self_ending
        with ending.scope(self._self_activate):
            try:
                item = self._step()
            except StopIteration:
                ending.end()
                raise
            except BaseException as error:
                ending.end(error)
                raise
        return self._observed(item)

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_ending.end()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_ending.end()


class AsyncStreamProxy(_StreamProxy):
    """The asynchronous counterpart of ``SyncStreamProxy`` (streams and async generators)."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        ending: Ending = self._self_ending
        with ending.scope(self._self_activate):
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                ending.end()
                raise
            except BaseException as error:
                ending.end(error)
                raise
        return self._observed(item)

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_ending.end()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_ending.end()

    async def aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_ending.end()


class SyncManagerProxy(_EndingProxy):
    """A ``with client.….stream(...) as stream`` manager: the span covers the ``with`` block.

    Entering runs with the call's stage active (the request is sent then); the
    entered stream is proxied too, so exhaustion or ``close()`` also end the span.
    """

    def __enter__(self) -> Any:
        ending: Ending = self._self_ending
        with ending.call.activate():
            try:
                entered = self.__wrapped__.__enter__()
            except BaseException as error:
                ending.end(error)
                raise
        ending.subject = entered
        return SyncStreamProxy(entered, ending)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_ending.end()


class AsyncManagerProxy(_EndingProxy):
    """The asynchronous counterpart of ``SyncManagerProxy``."""

    async def __aenter__(self) -> Any:
        ending: Ending = self._self_ending
        with ending.call.activate():
            try:
                entered = await self.__wrapped__.__aenter__()
            except BaseException as error:
                ending.end(error)
                raise
        ending.subject = entered
        return AsyncStreamProxy(entered, ending)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_ending.end()
