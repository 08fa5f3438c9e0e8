"""Debug records held for a unit of work, shipped only if it fails: ``log_buffer()``.

A scope (``log_buffer()``, as a context manager or a decorator) is one unit of work: a
request, a task, an invocation. It lives in a ``contextvars.ContextVar``, so each thread and
each asyncio task has its own (a task started inside a scope shares it, as it shares the
rest of its context). A handler with ``buffer_at`` set gives each scope a ``Held`` buffer:

- a record at or below ``buffer_at`` logged in the scope is held there instead of shipped,
  its message rendered now (``getMessage()``) and its trace ids already set, so that it
  reads the same when it ships later;
- a record at ERROR or above logged in the scope first ships what is held, in order, then
  itself; later records are held again;
- a scope that ends by an exception ships what is held too; one that ends normally lets it
  go, counted in ``stats.discarded`` (never in ``stats.dropped``: nothing was lost that
  was meant to arrive);
- the buffer is bounded: beyond ``buffer_max_bytes`` (messages' characters plus 26 per
  record, about their UTF-8 bytes) the oldest records are let go first, counted alike;
- ``buffer_sample_rate`` is the fraction of scopes whose records are never held, as
  Powertools' debug sampling ships a fraction of invocations whole.

Outside a scope nothing changes: ``emit()`` reads one attribute to learn that the handler
holds nothing. Everything here runs under the handler's lock (``emit()`` holds it; the end
of a scope takes it), which makes the handler's ``emit`` thread the one writer of a scope's
buffer for that handler. A nested ``log_buffer()`` joins the scope it is in.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
import logging
import random
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload

from ._core.events import EVENT_OVERHEAD

__all__ = ["Buffer", "LogBuffer", "log_buffer"]

F = TypeVar("F", bound=Callable[..., Any])


class BufferingHandler(Protocol):
    """What a scope needs of a handler: its lock, its ``emit``, and where to count."""

    lock: Any

    def emit(self, record: logging.LogRecord) -> None: ...

    def count_discarded(self, count: int) -> None: ...


class Held:
    """One handler's records held in one scope, oldest first, with their charged bytes."""

    __slots__ = ("records", "releasing", "ship_all", "size")

    def __init__(self, ship_all: bool) -> None:
        self.records: collections.deque[tuple[logging.LogRecord, int]] = collections.deque()
        self.size = 0
        self.ship_all = ship_all  # sampled: this scope's records are never held
        self.releasing = False  # the held records are being shipped: emit them as they come


class Scope:
    """One unit of work: every buffering handler's ``Held`` records in it."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[BufferingHandler, Held] = {}

    def end(self, failed: bool) -> None:
        """Ship (``failed``) or let go of what every handler holds, under each one's lock."""
        for handler, held in list(self.held.items()):
            with handler.lock:
                if failed:
                    release(handler, held)
                elif held.records:
                    count = len(held.records)
                    held.records.clear()
                    held.size = 0
                    handler.count_discarded(count)
        self.held.clear()


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "watchtower_refresh_log_buffer", default=None
)


def release(handler: BufferingHandler, held: Held) -> None:
    """Ship ``held``'s records through ``handler.emit``, in order (under the handler's lock)."""
    if not held.records:
        return
    records = list(held.records)
    held.records.clear()
    held.size = 0
    held.releasing = True
    try:
        for record, _ in records:
            handler.emit(record)
    finally:
        held.releasing = False


class Buffer:
    """One handler's buffering rules: what to hold, how much, and how many scopes ship all.

    Args:
        level: Records at or below this level are held in a scope; below ERROR.
        max_bytes: Most bytes held per scope (characters of the messages plus 26 each).
        sample_rate: Fraction of scopes, 0 to 1, whose records are never held.
    """

    __slots__ = ("level", "max_bytes", "sample_rate")

    def __init__(self, level: int, max_bytes: int, sample_rate: float) -> None:
        self.level = level
        self.max_bytes = max_bytes
        self.sample_rate = sample_rate

    def holds(self, handler: BufferingHandler, record: logging.LogRecord) -> bool:
        """Hold ``record`` if it belongs in a scope's buffer; ship the buffer before an error.

        Returns:
            True if the record is held (``emit()`` is done with it), False if it ships now.
        """
        level = record.levelno
        if self.level < level < logging.ERROR:
            return False
        scope = _current.get()
        if scope is None:
            return False
        held = scope.held.get(handler)
        if level >= logging.ERROR:
            if held is not None and not held.releasing:
                release(handler, held)
            return False
        if held is None:
            ship_all = self.sample_rate > 0 and random.random() < self.sample_rate
            held = scope.held[handler] = Held(ship_all)
        if held.ship_all or held.releasing:
            return False
        kept, size = _frozen(record)
        held.records.append((kept, size))
        held.size += size
        let_go = 0
        while held.size > self.max_bytes and held.records:
            _, oldest = held.records.popleft()
            held.size -= oldest
            let_go += 1
        if let_go:
            handler.count_discarded(let_go)
        return True


def _frozen(record: logging.LogRecord) -> tuple[logging.LogRecord, int]:
    """A copy of ``record`` that formats later as it would now, and its charged size."""
    kind = type(record)
    kept = kind.__new__(kind)  # copy.copy, without its pickling protocol's cost
    kept.__dict__.update(record.__dict__)
    message = record.msg
    if isinstance(message, Mapping):  # a dict message (structlog's): JSON when formatted
        kept.msg = dict(message)
        kept.args = record.args
        text = str(message)
    else:
        text = kept.msg = record.getMessage()
        kept.args = None
    return kept, len(text) + EVENT_OVERHEAD


class LogBuffer:
    """A scope of ``log_buffer()``: a context manager; one instance per ``with``."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: contextvars.Token[Scope | None] | None = None

    def __call__(self, function: F) -> F:
        """``@log_buffer()``: each call of ``function`` is its own scope."""
        return log_buffer(function)

    def __enter__(self) -> LogBuffer:
        if _current.get() is None:  # nested: the scope it is in goes on
            self._token = _current.set(Scope())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        scope = _current.get()
        _current.reset(token)
        if scope is not None:
            scope.end(failed=exc_type is not None and not issubclass(exc_type, GeneratorExit))


@overload
def log_buffer(function: F) -> F: ...


@overload
def log_buffer(function: None = None) -> LogBuffer: ...


def log_buffer(function: F | None = None) -> F | LogBuffer:
    """Open a scope in which debug records are held and shipped only if it fails.

    Use as ``with log_buffer():``, ``async with``-free in coroutines too (contextvars follow
    the task), or as a decorator, ``@log_buffer`` or ``@log_buffer()``, on a function or a
    coroutine function: each call is its own scope. Handlers hold records only with their
    ``buffer_at`` option set; see the module above for the rules.
    """
    if function is None:
        return LogBuffer()
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with LogBuffer():
                return await function(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        with LogBuffer():
            return function(*args, **kwargs)

    return run  # type: ignore[return-value]
