"""A writer's failures: whether the disk was full, when to try again, the one warning.

A write that fails (a segment, an index entry, a frame) closes the current segment; the
appends of the next second are refused and counted as the failure was (the writer counts,
in its stats), then one tries a new segment. A failed ack file write is counted only: its
records come back after a crash as duplicates, not as loss. The first failure of either
kind is the writer's one warning.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

__all__ = ["RETRY_SECONDS", "Failures"]

RETRY_SECONDS = 1.0
"""Seconds after a failed write before an append tries a new segment."""

# A full file system is a full spool: counted as such, not as an I/O error.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class Failures:
    """What went wrong with one writer's files (the writer's lock held for every call)."""

    __slots__ = ("_warn", "_warned", "disk_full", "retry_at")

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._warned = False
        self.disk_full = False  # the last write failed for want of space
        self.retry_at = 0.0  # time.monotonic() before which no append tries again

    def write_failed(self, exc: OSError) -> bool:
        """Start the pause before the next try; True when the file system is full."""
        self.disk_full = exc.errno in _FULL_ERRNOS
        self.retry_at = time.monotonic() + RETRY_SECONDS
        return self.disk_full

    def pausing(self) -> bool:
        """Whether the pause after a failed write lasts."""
        return time.monotonic() < self.retry_at

    def say(self, message: str) -> None:
        """Warn with ``message`` if the writer has not warned yet."""
        if not self._warned:
            self._warned = True
            self._warn(message)

    def forget_after_fork(self) -> None:
        """In a forked child: its own writer may try at once."""
        self.retry_at = 0.0
