"""Reading a dead owner's files: its segments, acknowledgements and index, and counting
exactly what damage cost.

How many records a damaged segment lost comes from the ids around the damage. Ids are
consecutive per writer and the writer's ``index`` names the first id of every segment it
began, so a segment's ids end where the next one named in the index begins, even when that
one was settled and deleted: a cut, an emptied or an unreadable segment is counted exactly.
After the last readable record of a writer's last segment, the writer's tail file (see
:mod:`.tail`) tells how many followed: the id of the last record it appended. It is trusted
only as far as the segments allow (:func:`written_end`); without it (a spool of an earlier
version), or beyond that, damage there counts as one record (at least what the
acknowledgements show existed).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import functools
import os
import stat
import struct

from .format import (
    FILE_HEADER,
    KIND_ACKS,
    KIND_INDEX,
    KIND_SEGMENT,
    MAX_FRAME,
    MIN_RECORD_FRAME,
    Frames,
    SpooledRecord,
    decode_record,
    file_start,
)
from .layout import OWNER_RE, SEGMENT_RE, list_entries, open_file, read_meta
from .tail import read_tail

__all__ = [
    "TRANSIENT_ERRNOS",
    "SegmentContents",
    "owners",
    "read_acks",
    "read_index",
    "read_segment",
    "segment_end",
    "segments_of",
    "written_end",
]

# Failures that say nothing about the file: try again later, count nothing.
TRANSIENT_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS}
)
_ID_SPAN = 1 << 32  # ack offsets are u32: a segment's ids lie within 2**32 of its first
# The segment size assumed for a writer that did not record its own (as the writer's
# default), and the most a recorded one may claim.
_SEGMENT_BYTES = 4 * 1024 * 1024
_MAX_SEGMENT_BYTES = 1 << 32


@dataclasses.dataclass
class SegmentContents:
    """What one segment holds.

    Attributes:
        records: Readable records, oldest first.
        acked: Offsets (from the first id) acknowledged in its ack file.
        lost: Records lost to damage, not acknowledged: exact when ``end`` was known.
        newer: The file is of a newer format version (nothing else is read).
        unreadable: The file could not be read at all (``lost`` counts its records).
    """

    records: list[SpooledRecord]
    acked: set[int]
    lost: int
    newer: bool = False
    unreadable: bool = False


def _pread(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)


def _frames(owner_fd: int, name: str, kind: int) -> tuple[list[bytes], Frames | None, bool]:
    """The valid payloads of one of our files, the scan that found them (its damage), and
    whether the file is of a newer format.

    Raises:
        OSError: It cannot be opened or read, or is not a regular file of ours.
    """
    fd = open_file(owner_fd, name, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        start, newer = file_start(os.pread(fd, FILE_HEADER.size, 0), kind)
        if newer:
            return [], None, True
        frames = Frames(functools.partial(_pread, fd), start, size)
        return [payload for payload, _ in frames], frames, False
    finally:
        os.close(fd)


def read_acks(owner_fd: int, first_id: int) -> set[int]:
    """Offsets acknowledged in a segment's ack file (none when it is missing or unreadable:
    the records come back, duplicates rather than loss)."""
    try:
        payloads, _, _ = _frames(owner_fd, f"{first_id:016x}.ack", KIND_ACKS)
    except OSError:
        return set()
    acked: set[int] = set()
    for payload in payloads:
        if len(payload) % 4 == 0:
            acked.update(struct.unpack(f"<{len(payload) // 4}I", payload))
    return acked


def read_index(owner_fd: int) -> list[int] | None:
    """The first ids of every segment the writer began, in order; None when there is no
    index (an older writer) or it is damaged: then nothing is inferred from it."""
    try:
        payloads, frames, newer = _frames(owner_fd, "index", KIND_INDEX)
    except OSError:
        return None
    if newer or frames is None or frames.regions or any(len(p) != 8 for p in payloads):
        return None
    firsts = [int.from_bytes(p, "little") for p in payloads]
    if firsts != sorted(firsts):
        return None
    return sorted(set(firsts))  # a segment begun again after a failed write: named twice


def segment_end(index: list[int] | None, first_id: int) -> int | None:
    """The id after the last of the segment beginning at ``first_id``, when known."""
    if index is None:
        return None
    at = bisect.bisect_right(index, first_id)
    if at == 0 or index[at - 1] != first_id or at == len(index):
        return None
    return index[at]


def written_end(
    owner_fd: int, index: list[int] | None, firsts: list[int]
) -> tuple[int, int] | None:
    """The first id of a dead writer's last segment, and the id after the last record the
    writer appended (from its tail file), when the tail file can be believed.

    Believed only for the segment the index names last, when its file is there (without
    a readable index, the last file may be an earlier segment whose successor was settled
    and deleted), and only as far as that segment could have held: its segment size (from
    ``meta.json``, at most 4 GiB) and one larger frame, in records of the smallest frame.
    A value outside that (damage, an edit) is ignored, and the damage counts as without it.

    Args:
        owner_fd: The owner directory.
        index: Its index (:func:`read_index`).
        firsts: The first ids of its segment files, in order.
    """
    if not firsts or not index or index[-1] != firsts[-1]:
        return None
    last = read_tail(owner_fd)
    if last is None:
        return None
    segment_bytes = read_meta(owner_fd).get("segment_bytes")
    if isinstance(segment_bytes, bool) or not isinstance(segment_bytes, int):
        segment_bytes = _SEGMENT_BYTES
    segment_bytes = min(max(segment_bytes, 0), _MAX_SEGMENT_BYTES)
    capacity = (segment_bytes + MAX_FRAME) // MIN_RECORD_FRAME
    first = firsts[-1]
    if not first - 1 <= last < first + capacity:
        return None
    return first, last + 1


def read_segment(
    owner_fd: int, first_id: int, end: int | None, written: int | None = None
) -> SegmentContents:
    """Read one segment and count what damage cost it.

    Args:
        owner_fd: Its owner directory.
        first_id: Its first id (from its name).
        end: The id after its last, when known (see :func:`segment_end`).
        written: For the writer's last segment, the id after the last record the writer
            appended, from its tail file (see :func:`written_end`): with ``end`` unknown,
            the records after the last intact frame are counted up to it. A value below
            what the segment shows (the writer died between a write and its store) is
            ignored.

    Raises:
        OSError: A transient failure (:data:`TRANSIENT_ERRNOS`): try again later.
    """
    acked = read_acks(owner_fd, first_id)
    try:
        payloads, frames, newer = _frames(owner_fd, f"{first_id:016x}.seg", KIND_SEGMENT)
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise
        lost = _lost(set(), acked, end, first_id, 1, written)
        return SegmentContents([], acked, lost, unreadable=True)
    if newer or frames is None:
        return SegmentContents([], set(), 0, newer=True)
    limit = _ID_SPAN if end is None else end - first_id
    records: list[SpooledRecord] = []
    seen: set[int] = set()
    last = -1  # ids increase through a segment: one not above the last is damage
    after_last = 0  # bad frames after the last good record
    for payload in payloads:
        try:
            record = decode_record(payload)
        except (struct.error, ValueError):
            after_last += 1
            continue
        offset = record.id - first_id
        if not last < offset < limit:
            after_last += 1
            continue
        seen.add(offset)
        last = offset
        records.append(record)
        after_last = 0
    tail = after_last + int(frames.damaged_tail)
    return SegmentContents(records, acked, _lost(seen, acked, end, first_id, tail, written))


def _lost(
    seen: set[int],
    acked: set[int],
    end: int | None,
    first_id: int,
    tail: int,
    written: int | None = None,
) -> int:
    """Records neither read nor acknowledged: all missing ids below ``end`` when known;
    else below ``written`` when it is at least what is known; else the gaps below the
    highest id known, plus ``tail`` for damage after it."""
    if end is not None:
        count = end - first_id
        return count - len({o for o in seen | acked if 0 <= o < count})
    known = seen | acked
    top = max(known) + 1 if known else 0
    if written is not None and written - first_id >= top:
        return written - first_id - len(known)
    return (top - len(known)) + tail


def segments_of(owner_fd: int) -> list[tuple[int, str]]:
    """Segment files of an owner (regular files only), by first id."""
    found = []
    for entry in list_entries(owner_fd):
        match = SEGMENT_RE.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((int(match.group(1), 16), entry.name))
    return sorted(found)


def owners(spool_fd: int, key: str | None = None) -> list[tuple[int, str]]:
    """Owner directory names (of one group hash, if given), oldest first; symlinks and
    other entries are left out."""
    found = []
    for entry in list_entries(spool_fd):
        match = OWNER_RE.match(entry.name)
        if match and (key is None or match.group(1) == key):
            found.append((int(match.group(3)), entry.name))
    return sorted(found)


def is_regular(status: os.stat_result) -> bool:
    """A regular file (not a symlink, directory or device)."""
    return stat.S_ISREG(status.st_mode)
