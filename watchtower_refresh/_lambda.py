"""Flushing at the end of an AWS Lambda invocation.

Lambda freezes the process between invocations, so a background sender cannot be trusted to
run then: what it has not sent when the handler returns may wait for the next invocation, or
be lost with the execution environment. ``flush_logs`` flushes every handler of ours when the
function returns, within a bounded time.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

from ._buffer import LogBuffer
from ._handler import live_handlers
from ._process import flush_all

__all__ = ["flush_handlers", "flush_logs", "flushing"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_FLUSH_SECONDS = 2.0
_SAFETY_MARGIN = 0.5  # seconds left to the runtime after the flush


def flush_handlers(timeout: float = DEFAULT_FLUSH_SECONDS) -> bool:
    """Flush every ``RefreshingCloudWatchLogHandler`` of this process within ``timeout`` seconds.

    Every handler is asked to send first, so all of them deliver at once; then each is waited
    for until one shared deadline. A handler that is stuck (a request that hangs, an outage)
    costs the others nothing: they have been sending all along.

    Returns:
        True if every handler had delivered (or dropped and counted) its records in time.
    """
    return flush_all(timeout, live_handlers())


@contextlib.contextmanager
def flushing(timeout: float = DEFAULT_FLUSH_SECONDS) -> Iterator[None]:
    """Flush every handler of ours when the block ends, however it ends."""
    try:
        yield
    finally:
        flush_handlers(timeout)


@overload
def flush_logs(function: F) -> F: ...


@overload
def flush_logs(*, timeout: float = DEFAULT_FLUSH_SECONDS) -> Callable[[F], F]: ...


def flush_logs(
    function: F | None = None, *, timeout: float = DEFAULT_FLUSH_SECONDS
) -> F | Callable[[F], F]:
    """Decorate a Lambda handler so that its records are delivered before it returns.

    Use as ``@flush_logs`` or ``@flush_logs(timeout=1.0)``. The flush waits at most
    ``timeout`` seconds, and never longer than the invocation has left (from
    ``context.get_remaining_time_in_millis()``) minus half a second.

    Each invocation is also a ``log_buffer()`` scope: with a handler's ``buffer_at`` set,
    its DEBUG records ship only if the invocation logs an ERROR or raises.
    """

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                with LogBuffer():  # the scope ends, shipping or letting go, before the flush
                    return handler(event, context, *args, **kwargs)
            finally:
                flush_handlers(_budget(context, timeout))

        return wrapper  # type: ignore[return-value]

    return decorate(function) if function is not None else decorate


def _budget(context: Any, timeout: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return timeout
    try:
        left = float(remaining()) / 1000.0 - _SAFETY_MARGIN
    except (TypeError, ValueError):
        return timeout
    return max(0.0, min(timeout, left))
