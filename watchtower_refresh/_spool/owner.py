"""A writer's own owner directory: its segments on disk, their acks, and the room they take.

The writer (:mod:`.writer`) keeps the append path and decides when a segment begins or
ends; this object does it on disk and in the books: the index entry, the segment file and
its header, the ack files, the mapped tail file (:mod:`.tail`, whose slot the append path
stores into), deleting a settled segment, and what the writer's files take against
``max_bytes``. Every call is made with the writer's lock held, and what the append
path owns (the next id, the current segment's end) is passed in.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from .format import (
    ACKS_HEADER,
    FORMAT_VERSION,
    INDEX_HEADER,
    SEGMENT_HEADER,
    encode_acks,
    encode_frame,
)
from .layout import (
    INDEX_NAME,
    append_file,
    group_key,
    make_owner,
    open_directory,
    open_file,
    others_bytes,
    remove_owner,
    unlink_file,
)
from .segments import Segment, SegmentBook
from .tail import Tail

__all__ = ["Owner"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Owner:
    """This process's owner directory for one writer, and the room left in the spool.

    ``room`` is ``max_bytes`` less what the other owner directories held at the last
    :meth:`rescan` and less ``finished``: how far the current segment may grow, in bytes.
    ``finished`` counts the writer's own bytes outside its current segment (the index,
    finished segments, ack files). What the index and :meth:`finish` add to ``finished``
    comes off ``room`` at the next :meth:`rescan`; ack files and deleted segments change
    both at once.
    """

    def __init__(self, directory: Path, group: str, max_bytes: int) -> None:
        self.directory = directory
        self.group = group
        self.max_bytes = max_bytes
        self.dir_fd = -1  # the spool directory, checked once at open
        self.path: Path | None = None  # the owner directory, once made
        self.fd = -1  # the owner directory's descriptor
        self._lock_fd = -1
        self._indexed = 0  # the first id last named in the index (0: no index yet)
        self._book = SegmentBook()
        self.tail = Tail()
        self.finished = 0
        self.room = 0
        self.scanned_at = 0.0  # time.monotonic() of the last rescan

    # -- the directory

    def open_directory(self) -> None:
        """Open and check the spool directory (raises ``Unsafe`` or ``OSError``)."""
        self.dir_fd = open_directory(self.directory)

    def start(self, next_id: int, segment_bytes: int) -> None:
        """Make this process's owner directory in the spool directory, locked, with its
        tail file mapped (holding the id before ``next_id``)."""
        pid = os.getpid()
        name = f"g{group_key(self.group)}-p{pid}-t{_now_ms()}-{secrets.token_hex(4)}"
        meta = {
            "version": FORMAT_VERSION,
            "group": self.group,
            "pid": pid,
            "host": socket.gethostname(),
            "created_ms": _now_ms(),
            # what bounds the records a segment may hold, for a reader of the tail file
            "segment_bytes": segment_bytes,
        }
        self.fd, self._lock_fd = make_owner(self.dir_fd, name, json.dumps(meta).encode())
        self._indexed = 0
        self.path = self.directory / name
        self.finished = self.tail.create(self.fd, next_id - 1)

    def rescan(self) -> None:
        """Measure what this uid's other owner directories hold, in bytes."""
        self.scanned_at = time.monotonic()
        own = self.path.name if self.path is not None else None
        self.room = self.max_bytes - others_bytes(self.dir_fd, own) - self.finished

    def remove_if_done(self) -> None:
        """Remove the owner directory when no segment is left in it (at close)."""
        if self.path is not None and not self._book.segments:
            remove_owner(self.dir_fd, self.path.name, self.fd)

    def release(self) -> None:
        """Close every descriptor: the lock goes with it, for the next adopter."""
        self.tail.drop()
        for fd in (self._lock_fd, self.fd, self.dir_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock_fd = self.fd = self.dir_fd = -1

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's owner; keep the spool directory's descriptor,
        since the child's owner goes there too."""
        self.tail.drop()  # the parent's: the child stores into its own
        for fd in (self._lock_fd, self.fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock_fd = self.fd = -1
        self.path = None
        self._book = SegmentBook()
        self.finished = 0

    # -- segments

    @property
    def current(self) -> Segment | None:
        """The segment being appended to, if any."""
        return self._book.current

    def begin(self, first_id: int, *, fsync: bool) -> int:
        """Begin the segment whose first id is ``first_id``; return its descriptor."""
        segment = Segment(first_id)
        name = f"{first_id:016x}.seg"
        # The index first: a segment never exists that the index does not name, so a
        # reader knows where each segment's ids end even when the next one is settled.
        if self._indexed != first_id:  # not again after a failed write
            entry = encode_frame(first_id.to_bytes(8, "little"))
            if not self._indexed:
                entry = INDEX_HEADER + entry
            self.finished += append_file(self.fd, INDEX_NAME, entry, verify=False)
            self._indexed = first_id
        fd = open_file(self.fd, name, _FLAGS, verify=False)
        try:
            if os.write(fd, SEGMENT_HEADER) != len(SEGMENT_HEADER):
                raise OSError(errno.ENOSPC, "short write of a segment header")
            if fsync:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            unlink_file(self.fd, name)
            raise
        self._book.segments[first_id] = segment
        self._book.current = segment
        return fd

    def finish(self, next_id: int, size: int) -> None:
        """The current segment ends before ``next_id``, ``size`` bytes long."""
        segment = self._book.current
        assert segment is not None
        segment.count = next_id - segment.first_id
        segment.bytes = size
        self.finished += size
        segment.closed = True
        self._book.current = None
        self._delete_if_done(segment)

    # -- acknowledgements

    def settle(self, ids: Iterable[int], floor_id: int, next_id: int) -> tuple[int, list[OSError]]:
        """Acknowledge ``ids`` in the books and the ack files; delete settled segments.

        Returns:
            How many ids were newly acknowledged, and the failed writes of ack files.
        """
        acked = 0
        failed: list[OSError] = []
        for segment, offsets in self._book.mark(ids, floor_id, next_id).items():
            acked += len(offsets)
            if not segment.settled:
                try:
                    self._write_acks(segment, offsets)
                except OSError as exc:
                    failed.append(exc)
            self._delete_if_done(segment)
        return acked, failed

    def is_acked(self, record_id: int, floor_id: int, next_id: int) -> bool:
        """Whether ``record_id`` was acknowledged (or its segment settled and deleted)."""
        return self._book.is_acked(record_id, floor_id, next_id)

    def listing(self, next_id: int) -> list[tuple[int, int, bool]]:
        """``(first id, records, is current)`` of each segment, oldest first."""
        book = self._book
        return [
            (first, book.count(segment, next_id), segment is book.current)
            for first, segment in sorted(book.segments.items())
        ]

    def _write_acks(self, segment: Segment, offsets: list[int]) -> None:
        data = encode_acks(offsets)
        if segment.ack_bytes == 0:
            data = ACKS_HEADER + data
        written = append_file(self.fd, f"{segment.first_id:016x}.ack", data, verify=False)
        segment.ack_bytes += written
        self.finished += written
        self.room -= written

    def _delete_if_done(self, segment: Segment) -> None:
        if not segment.settled or self.path is None:
            return
        name = f"{segment.first_id:016x}"
        unlink_file(self.fd, f"{name}.seg")
        unlink_file(self.fd, f"{name}.ack")
        self.finished -= segment.bytes + segment.ack_bytes
        self.room += segment.bytes + segment.ack_bytes
        del self._book.segments[segment.first_id]
