"""A writer reads its own records back from where its memory queue stopped taking them."""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable

from .format import FILE_HEADER, Frames, SpooledRecord, decode_record
from .layout import open_file

__all__ = ["Backlog", "read_backlog"]


class Backlog:
    """A writer's reading of its own backlog, which goes on where the last read stopped."""

    def __init__(self) -> None:
        self._hint: tuple[int, int, int] | None = None  # next id, segment, byte

    def read(
        self,
        owner_fd: int,
        segments: list[tuple[int, int, bool]],
        current_end: int,
        start_id: int,
        acked: Callable[[int], bool],
        *,
        max_records: int,
        max_bytes: int,
    ) -> tuple[list[SpooledRecord], int]:
        """The records of :func:`read_backlog`, and how many damaged frames it stepped over."""
        found, hint, corrupt = read_backlog(
            owner_fd,
            segments,
            current_end,
            self._hint,
            start_id,
            acked,
            max_records=max_records,
            max_bytes=max_bytes,
        )
        if hint is not None:
            self._hint = hint
        return found, corrupt


def read_backlog(
    owner_fd: int,
    segments: list[tuple[int, int, bool]],
    current_end: int,
    hint: tuple[int, int, int] | None,
    start_id: int,
    acked: Callable[[int], bool],
    *,
    max_records: int,
    max_bytes: int,
) -> tuple[list[SpooledRecord], tuple[int, int, int] | None, int]:
    """Own records from ``start_id`` on that ``acked`` does not know, oldest first.

    Args:
        owner_fd: The writer's owner directory.
        segments: ``(first id, records, is current)`` of each of its segments, in order.
        current_end: Bytes written to the current segment: reading stops there.
        hint: ``(next id, segment, byte)`` where the previous call stopped.
        start_id: The first id wanted.
        acked: Whether an id was acknowledged (or its segment settled).
        max_records: Most records returned.
        max_bytes: Most message characters returned (one larger record still comes back).

    Returns:
        The records, where to continue next time (None: no record read), and how many
        damaged frames were stepped over.
    """
    found: list[SpooledRecord] = []
    size = corrupt = 0
    for first_id, count, is_current in segments:
        if first_id + count <= start_id:
            continue
        position = FILE_HEADER.size
        if hint is not None and hint[0] == max(start_id, first_id) and hint[1] == first_id:
            position = hint[2]
        try:
            fd = open_file(owner_fd, f"{first_id:016x}.seg", os.O_RDONLY, verify=False)
        except FileNotFoundError:
            continue  # settled and deleted meanwhile
        try:
            end = current_end if is_current else os.fstat(fd).st_size
            frames = Frames(functools.partial(_pread, fd), position, end)
            for payload, frame_end in frames:
                try:
                    record = decode_record(payload)
                except (struct.error, ValueError):
                    corrupt += 1
                    continue
                if record.id < start_id or acked(record.id):
                    continue
                if found and (len(found) >= max_records or size + len(record.message) > max_bytes):
                    return found, hint, corrupt + frames.regions
                found.append(record)
                size += len(record.message)
                hint = (record.id + 1, first_id, frame_end)
            # The current segment may end in a frame still being written: not damage.
            corrupt += frames.regions - int(is_current and frames.damaged_tail)
        finally:
            os.close(fd)
    return found, hint, corrupt


def _pread(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)
