"""Every use of another library's private API, in one place, each checked by a test.

An upgrade that breaks one of these assumptions fails ``tests/test_compat.py`` loudly instead
of degrading delivery quietly. Each function says what it relies on and what happens when
the assumption no longer holds.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import watchtower

__all__ = [
    "credential_expiry",
    "drop_repeated_search_paths",
    "format_string",
    "handler_at_fork_reinit",
    "holds_lock",
    "holds_logging_lock",
    "is_moto_control",
    "moto_request_handler",
    "moto_reset_path",
    "moto_wsgi_app",
    "overridden_submit_batch",
    "register_multiprocessing_after_fork",
    "watchtower_json_default",
]


def credential_expiry(credentials: object) -> Any:
    """When refreshable botocore credentials expire (an aware datetime), or None.

    botocore keeps it on ``RefreshableCredentials._expiry_time`` only; it is read for
    display (``watchtower-refresh check``), never to decide anything.
    """
    return getattr(credentials, "_expiry_time", None)


def holds_lock(lock: object) -> bool:
    """True when this thread holds ``lock``, an ``RLock``.

    Relies on ``RLock._is_owned`` (the method ``threading.Condition`` relies on). Without it
    the answer is False, and waits that could otherwise deadlock on that lock stay bounded
    by their timeouts.
    """
    is_owned = getattr(lock, "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


def holds_logging_lock() -> bool:
    """True when this thread holds the logging module's lock, as ``dictConfig`` does throughout
    (``logging._lock``, an ``RLock``)."""
    return holds_lock(getattr(logging, "_lock", None))


def handler_at_fork_reinit(handler: logging.Handler) -> None:
    """Renew ``handler``'s lock in a forked child, as ``logging.Handler._at_fork_reinit`` does.

    logging calls ``_at_fork_reinit`` on every handler after a fork; watchtower's override
    also resets watchtower's own state, which this handler does not have, so ours calls
    logging's. Without that method (it appeared in Python 3.9), the lock is recreated.
    """
    reinit = getattr(logging.Handler, "_at_fork_reinit", None)
    if callable(reinit):
        reinit(handler)
    else:
        handler.createLock()


def format_string(formatter: logging.Formatter) -> str | None:
    """The format string a ``logging.Formatter`` was built with, or None if unknown.

    logging keeps it on ``Formatter._style._fmt`` (and ``Formatter._fmt``); it is read to
    decide whether records need empty trace attributes. When it cannot be read the answer
    is None, and they are given (the safe side).
    """
    text = getattr(getattr(formatter, "_style", None), "_fmt", None)
    return text if isinstance(text, str) else None


def watchtower_json_default() -> Callable[[Any], Any]:
    """watchtower's ``default`` for ``json.dumps`` of dict messages (``_json_serialize_default``).

    Falls back to the same rule (ISO 8601 for dates, ``repr`` for the rest) if watchtower
    renames it.
    """
    found = getattr(watchtower, "_json_serialize_default", None)
    return found if callable(found) else _json_default


_WATCHTOWER_SUBMIT = getattr(watchtower.CloudWatchLogHandler, "_submit_batch", None)


def overridden_submit_batch(handler: logging.Handler) -> Callable[[list[Any], str], Any] | None:
    """``handler``'s ``_submit_batch`` if a subclass or a test replaced watchtower's, else None.

    watchtower sends each batch through its private ``_submit_batch(batch, stream_name)``;
    code written for watchtower overrides or patches it to see or reroute every batch. Such
    an override gets each batch here too, in watchtower's shape.
    """
    submit = getattr(handler, "_submit_batch", None)
    if submit is None or getattr(submit, "__func__", submit) is _WATCHTOWER_SUBMIT:
        return None
    return submit  # type: ignore[no-any-return]


def _json_default(value: Any) -> Any:
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else repr(value)


def register_multiprocessing_after_fork(
    module_name: str,
    token: object,
    callback: Callable[[], None],
    *,
    also: Callable[[], None] | None = None,
) -> bool:
    """Run ``callback`` when a forked child of ``module_name``'s ``Process`` ends cleanly.

    ``also``, if given, runs in the child right after the fork.

    ``multiprocessing.util.register_after_fork`` and ``Finalize`` are undocumented; billiard
    (Celery's fork of multiprocessing) has the same pair. Such a child ends with ``os._exit``,
    which skips atexit and so ``logging.shutdown``; its finalizers with an exit priority still
    run. Does nothing (returns False) if the module is not imported or lacks either function.
    """
    util = sys.modules.get(module_name)
    register = getattr(util, "register_after_fork", None)
    finalize = getattr(util, "Finalize", None)
    if not callable(register) or not callable(finalize):
        return False

    def after_fork(_token: object) -> None:  # pragma: no cover - runs in a forked child
        finalize(None, callback, exitpriority=10)
        if also is not None:
            also()

    register(token, after_fork)
    return True


def drop_repeated_search_paths(loader: object) -> None:
    """Remove the trailing entries of a botocore ``Loader``'s search paths that repeat earlier ones.

    ``boto3.Session`` appends its own data directory to its loader's search paths; a loader
    shared by many sessions would gain one entry per session. Relies on
    ``Loader.search_paths`` returning the loader's own list (``_search_paths``), edited in
    place. Only the last entry goes each time, so a lookup iterating the list meanwhile
    misses nothing. If botocore ever returns a copy, nothing is removed: the list grows by
    one repeated directory per session, which costs lookups a little time, never a result.
    """
    paths = getattr(loader, "search_paths", None)
    if not isinstance(paths, list):
        return
    while len(paths) > 1 and paths[-1] in paths[:-1]:
        paths.pop()


# moto, for watchtower_refresh.testing only (imported there, never by the handler). moto's
# public ThreadedMotoServer cannot put middleware in front of its app, so these build what
# it builds, from moto's internals; everything else uses moto only over HTTP, as any AWS
# client would.


def moto_wsgi_app() -> Callable[[dict[str, Any], Callable[..., Any]], Any]:
    """moto's WSGI application, dispatching every service by host and request, as its server's."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app: Callable[[dict[str, Any], Callable[..., Any]], Any] = DomainDispatcherApplication(
        create_backend_app
    )
    return app


def moto_request_handler() -> type[Any]:
    """The request handler class moto's server gives werkzeug (it keeps request headers' case)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    handler: type[Any] = MotoRequestHandler
    return handler


def is_moto_control(path: str) -> bool:
    """True for moto's own HTTP controls (``/moto-api/...``), which are never faulted."""
    return path.startswith("/moto-api/")


def moto_reset_path() -> str:
    """The path of moto's HTTP control that forgets every resource of every backend."""
    return "/moto-api/reset"
