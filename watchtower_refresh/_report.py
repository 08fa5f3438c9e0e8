"""How a handler tells people what went wrong, without ever raising into the application.

Every delivery problem becomes one ``WatchtowerRefreshWarning``: once per process for a fixed
condition (a full spool, no credentials that refresh), or once per failure episode for a
failing put (an episode ends with the next successful put). A warning raised from ``emit()``
is put aside (``soon``) when warnings go through logging, since ``emit()`` holds the handler's
lock and logging's may be held by a thread waiting for it; a delivery thread or ``flush()``
issues it. The one stderr line of a process that ends is ``_process.report``'s.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings

from ._exceptions import WatchtowerRefreshWarning
from ._redact import redact

__all__ = ["Reporter", "records", "warn"]


def warn(message: str) -> None:
    """Issue a WatchtowerRefreshWarning that cannot raise into a sender or a caller.

    Under ``-W error`` a warning becomes an exception in whichever thread issues it; the
    message is then written to stderr instead.
    """
    try:
        warnings.warn(redact(message), WatchtowerRefreshWarning, stacklevel=3)
    except Exception:
        with contextlib.suppress(Exception):  # nowhere left to report to
            sys.stderr.write(f"WatchtowerRefreshWarning: {redact(message)}\n")


def records(count: int) -> str:
    """``count`` records, in words: "1 record", "12 records"."""
    return "1 record" if count == 1 else f"{count} records"


def warnings_go_to_logging() -> bool:
    """Whether ``logging.captureWarnings(True)`` routes warnings through logging now."""
    return getattr(warnings.showwarning, "__module__", None) == "logging"


class Reporter:
    """The warnings of one handler.

    Args:
        lock: The lock that guards the sets of warnings already given (the ledger's).
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._warned: set[str] = set()  # once per process
        self._failing: set[str] = set()  # once per episode: cleared by the next success
        self.pending: list[str] = []
        """Warnings put aside by ``emit()``, for a thread that holds no lock."""

    def after_fork(self, lock: threading.RLock) -> None:
        """A forked child: its own episodes and nothing pending; what was warned stays warned."""
        self._lock = lock
        self._failing = set()
        self.pending = []

    def once(self, key: str, message: str, *, per_episode: bool = False) -> None:
        """Warn about ``key`` once per process, or once per failure episode."""
        with self._lock:
            seen = self._failing if per_episode else self._warned
            if key in seen:
                return
            seen.add(key)
        warn(message)

    def episode_ended(self) -> None:
        """A put succeeded: the next failure warns again."""
        with self._lock:
            self._failing.clear()

    def soon(self, message: str, key: str | None = None) -> bool:
        """Warn from ``emit()`` now if that is safe, else put it aside; True if put aside.

        A warning captured into logging (``logging.captureWarnings``, which Django turns on)
        needs logging's lock, which ``dictConfig`` holds while it waits for the handler's: a
        deadlock. Such warnings wait for a thread that holds neither.
        """
        if key is not None:
            with self._lock:
                if key in self._warned:
                    return False
                self._warned.add(key)
        if not warnings_go_to_logging():
            warn(message)  # nothing in it takes logging's lock: say it now
            return False
        self.pending.append(message)
        return True

    def issue_pending(self) -> None:
        """Issue the warnings ``emit()`` put aside."""
        pending = self.pending
        while pending:
            try:
                message = pending.pop(0)
            except IndexError:
                return
            warn(message)
