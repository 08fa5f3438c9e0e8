"""The segment file a writer appends to, and when it changes.

A writer appends each frame to one open segment file of its owner directory. This object
alone holds that file's descriptor, the offset where the next frame goes and the budget:
what the next frames may take without a look at ``segment_bytes``, ``max_bytes`` or the
descriptor, so that the append path makes one comparison (zero while there is no segment to
write). It begins a segment, writes frames into it, rolls over into a new one at
``segment_bytes``, re-measures the room under ``max_bytes`` and finishes the segment at a
failure, a close or a fork. The ids, the tail file, the counting and the lock stay with the
writer (:mod:`.writer`), which passes its next id in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from .format import MAX_FRAME, SEGMENT_HEADER
from .owner import Owner

__all__ = ["RESCAN_SECONDS", "CurrentSegment"]

RESCAN_SECONDS = 0.5
"""Least time, in seconds, between two measures of the others' bytes when a frame would not fit."""


class CurrentSegment:
    """The segment being appended to: its descriptor, offset and budget.

    Used by one writer: ``budget`` and ``write`` from the appending thread (one at a time),
    the rest under the writer's lock.

    Args:
        owner: The owner directory the segments are in, and the room left in the spool.
        segment_bytes: Size in bytes at which a segment is finished and a new one begun.
        fsync: ``fsync`` every frame.
    """

    def __init__(self, owner: Owner, segment_bytes: int, *, fsync: bool) -> None:
        self._owner = owner
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self.fd = -1
        """The segment file's descriptor; -1 while there is none."""
        self.offset = 0
        """Bytes in the segment file."""
        self.budget = 0
        """Bytes the next frames may take before a look at the limits; 0 without a segment."""

    def start(self, next_id: int) -> None:
        """Begin the first segment of a new owner directory, its first id ``next_id``."""
        self.offset = 0
        self.rescan()
        self.begin(next_id)

    def begin(self, next_id: int) -> None:
        """Begin a segment whose first id is ``next_id`` (raises ``OSError``)."""
        self.fd = self._owner.begin(next_id, fsync=self._fsync)
        self.offset = len(SEGMENT_HEADER)
        self.rebudget()

    def write(self, frame: bytes) -> None:
        """Append ``frame`` in one ``os.write``, then ``fsync`` it if asked to.

        Raises:
            OSError: The write or the ``fsync`` failed, or was short: a partial frame is
                damage the reader skips, and the segment is done.
        """
        size = len(frame)
        written = os.write(self.fd, frame)
        if written != size:
            self.offset += written
            raise OSError(errno.ENOSPC, "short write")
        if self._fsync:
            os.fsync(self.fd)
        self.offset += size
        self.budget -= size

    def fits(self, size: int, next_id: int) -> bool:
        """Make room for a frame of ``size`` bytes, the record ``next_id``: roll over past
        ``segment_bytes`` (unless the segment is still empty), then see whether it fits
        under ``max_bytes``, measuring the others again at most every ``RESCAN_SECONDS``.

        Raises:
            OSError: Rolling over failed.
        """
        owner = self._owner
        current = owner.current
        assert current is not None
        if self.offset + size > self._segment_bytes and next_id > current.first_id:
            self._roll_over(next_id)
        if self.offset + size > owner.room:
            if time.monotonic() - owner.scanned_at >= RESCAN_SECONDS:
                self.rescan()
            if self.offset + size > owner.room:
                return False
        return True

    def rebudget(self) -> None:
        """Work the budget out again: the room or the segment changed."""
        if self.fd < 0:
            self.budget = 0
        else:
            limit = min(self._segment_bytes, self._owner.room, self.offset + MAX_FRAME)
            self.budget = limit - self.offset

    def rescan(self) -> None:
        """Measure what the other owner directories hold, and rebudget."""
        self._owner.rescan()
        self.rebudget()

    def close(self, next_id: int) -> None:
        """Close the segment file and finish the segment before ``next_id`` (at close)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._finish(next_id)

    def drop(self, next_id: int) -> None:
        """After a failed write: close the file, if open, quietly, and finish the segment
        before ``next_id``; the next append begins a new one."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
            self._finish(next_id)

    def forget_after_fork(self) -> None:
        """In a forked child: close the parent's segment file; the child begins its own."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1
        self.offset = self.budget = 0

    def _roll_over(self, next_id: int) -> None:
        os.close(self.fd)
        self.fd = -1
        self._finish(next_id)
        self.rescan()
        self.begin(next_id)

    def _finish(self, next_id: int) -> None:
        if self._owner.current is None:
            return
        self._owner.finish(next_id, self.offset)
        self.offset = 0
        self.rebudget()
