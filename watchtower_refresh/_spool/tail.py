"""The id of the last record a writer appended, where the writer's death cannot take it.

Ids are consecutive and the ``index`` names the first id of every segment, so damage is
counted exactly wherever a later id is known. After the last intact frame of a writer's
last segment, only this file says how many records followed: the writer maps it
(``MAP_SHARED``) when it makes its owner directory and stores each record's id into it
after the record's ``write``. A store into shared memory is no system call (about the cost
of an attribute assignment in ``emit()``), and the page cache keeps it when the process is
killed, as it keeps the segment writes; like them, not a power cut unless the writer
``fsync``s (it then ``msync``s this page too).

Why not a ``pwrite`` per record: a second system call in ``emit()`` costs about a tenth of
it. Why the risk of a mapping is small here: a mapped file truncated underneath kills the
process with SIGBUS, but this one is in the writer's own ``0700`` directory, written whole
before it is mapped (no page the file system must find room for later), and nothing of the
package truncates it: adopters read it with ``pread`` and only once its writer is dead.

Readers never trust it beyond what the segments allow (see :func:`.reading.written_end`):
it only ever adds to ``corrupt``, and nothing is deleted on its basis. On a big-endian
machine the file is not made (the id is stored in native order), and spools without it
(an earlier version's) are counted as before.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys

from .format import (
    FILE_HEADER,
    FILE_MAGIC,
    FORMAT_VERSION,
    KIND_TAIL,
    TAIL_HEADER,
    TAIL_OFFSET,
    TAIL_SIZE,
)
from .layout import TAIL_NAME, open_file

__all__ = ["Tail", "read_tail"]


def _scratch() -> memoryview:
    return memoryview(bytearray(8)).cast("Q")


class Tail:
    """The writer's mapped tail file: ``slot[0] = record_id`` after each append.

    Without a file (none made yet, after a fork, or where it cannot be mapped), ``slot`` is
    a scratch buffer, so that the append path stores unconditionally.
    """

    def __init__(self) -> None:
        self.slot = _scratch()
        self._map: mmap.mmap | None = None

    def create(self, owner_fd: int, last_id: int) -> int:
        """Make and map the tail file in a new owner directory, holding ``last_id``.

        Returns:
            The bytes written. Never raises: without the file, damage after the last
            intact frame counts as before.
        """
        if sys.byteorder != "little":
            return 0
        written = 0
        with contextlib.suppress(OSError, ValueError):
            fd = open_file(owner_fd, TAIL_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, verify=False)
            try:
                data = TAIL_HEADER.ljust(TAIL_OFFSET, b"\0") + last_id.to_bytes(8, "little")
                written = os.write(fd, data)
                if written != TAIL_SIZE:
                    return written
                mapped = mmap.mmap(fd, TAIL_SIZE)  # MAP_SHARED, read and write
            finally:
                os.close(fd)
            self._map = mapped
            self.slot = memoryview(mapped)[TAIL_OFFSET:TAIL_SIZE].cast("Q")
        return written

    def sync(self) -> None:
        """To the disk (``msync``), for a writer that ``fsync``s every record."""
        if self._map is not None:
            self._map.flush()

    def drop(self) -> None:
        """Stop storing into the file (closing, or in a forked child: the parent's).

        The mapping goes when the last view of it does: the writer takes the new
        ``slot`` first, so no store ever meets a released view.
        """
        self.slot = _scratch()
        self._map = None


def read_tail(owner_fd: int) -> int | None:
    """The id in an owner's tail file, or None when there is none that can be read (an
    earlier version's spool, a file of another kind, version or size, or not ours)."""
    try:
        fd = open_file(owner_fd, TAIL_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.pread(fd, TAIL_SIZE + 1, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != TAIL_SIZE:
        return None
    magic, version, kind = FILE_HEADER.unpack_from(data)
    if magic != FILE_MAGIC or version != FORMAT_VERSION or kind != KIND_TAIL:
        return None
    return int.from_bytes(data[TAIL_OFFSET:], "little")
