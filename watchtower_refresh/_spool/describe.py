"""What operators see: a summary of every owner directory, read without claiming any."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import stat
from pathlib import Path

from .layout import (
    ADOPTER_NAME,
    LOCK_NAME,
    OWNER_RE,
    Unsafe,
    list_entries,
    open_directory,
    open_file,
    open_owner,
    read_meta,
)
from .reading import owners, read_index, read_segment, segment_end, segments_of, written_end

__all__ = ["OwnerSummary", "describe"]


@dataclasses.dataclass(frozen=True)
class OwnerSummary:
    """What one owner directory holds, for operators.

    Attributes:
        directory: The owner directory.
        group: The log group name (``?`` when its ``meta.json`` is unreadable).
        pid: The process that wrote it.
        host: The host it ran on, when known.
        state: ``alive`` (its writer holds the lock), ``dead`` (waiting for an adopter),
            ``replaying`` (an adopter holds it; ``adopter_pid`` says which) or ``unsafe``
            (not ours, or writable by others: never adopted, nothing in it read).
        adopter_pid: The adopting process, when replaying.
        records: Records not yet acknowledged.
        bytes: Bytes on disk.
        oldest_timestamp_ms: Timestamp of the oldest record not yet acknowledged, in
            milliseconds since the epoch; None when there is none.
        corrupt: Records found damaged (not counted for a live writer, whose last record may
            be half written at the instant it is read).
        newer_files: Files of a newer format version.
    """

    directory: str
    group: str
    pid: int
    host: str | None
    state: str
    adopter_pid: int | None
    records: int
    bytes: int
    oldest_timestamp_ms: int | None
    corrupt: int
    newer_files: int


def _state(owner_fd: int) -> str:
    try:
        fd = open_file(owner_fd, LOCK_NAME, os.O_RDONLY)
    except OSError:
        return "dead"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        try:
            os.stat(ADOPTER_NAME, dir_fd=owner_fd, follow_symlinks=False)
        except OSError:
            return "alive"
        return "replaying"
    finally:
        os.close(fd)
    return "dead"


def _adopter(owner_fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        fd = open_file(owner_fd, ADOPTER_NAME, os.O_RDONLY)
        try:
            return int(os.read(fd, 64).decode("ascii"))
        finally:
            os.close(fd)
    return None


def _summary(directory: Path, name: str, owner_fd: int) -> OwnerSummary:
    match = OWNER_RE.match(name)
    assert match is not None
    meta = read_meta(owner_fd)
    state = _state(owner_fd)
    adopter = _adopter(owner_fd) if state == "replaying" else None
    records = size = corrupt = newer = 0
    oldest: int | None = None
    with contextlib.suppress(OSError):
        for entry in list_entries(owner_fd):
            with contextlib.suppress(OSError):
                status = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(status.st_mode):
                    size += status.st_size
    index = read_index(owner_fd)
    with contextlib.suppress(OSError):
        found = segments_of(owner_fd)
        last = written_end(owner_fd, index, [first for first, _ in found])
        for first_id, _ in found:
            written = last[1] if last is not None and last[0] == first_id else None
            end = segment_end(index, first_id)
            try:
                contents = read_segment(owner_fd, first_id, end, written)
            except OSError:
                continue
            newer += contents.newer
            corrupt += contents.lost
            for record in contents.records:
                if record.id - first_id not in contents.acked:
                    records += 1
                    if oldest is None or record.timestamp_ms < oldest:
                        oldest = record.timestamp_ms
    host = meta.get("host")
    return OwnerSummary(
        directory=str(directory / name),
        group=str(meta.get("group", "?")),
        pid=int(match.group(2)),
        host=host if isinstance(host, str) else None,
        state=state,
        adopter_pid=adopter,
        records=records,
        bytes=size,
        oldest_timestamp_ms=oldest,
        corrupt=0 if state == "alive" else corrupt,
        newer_files=newer,
    )


def _unsafe(directory: Path, name: str) -> OwnerSummary:
    match = OWNER_RE.match(name)
    assert match is not None
    return OwnerSummary(
        str(directory / name), "?", int(match.group(2)), None, "unsafe", None, 0, 0, None, 0, 0
    )


def describe(directory: str | os.PathLike[str]) -> list[OwnerSummary]:
    """Summarise every owner directory in a spool directory, oldest first.

    Reads without claiming anything, and follows no symlink. A liveness probe takes each
    owner's lock for an instant, so an adopter racing it may skip that owner until it next
    adopts.

    Raises:
        OSError: ``directory`` cannot be listed, or is not safe (see :mod:`.layout`).
    """
    path = Path(directory)
    spool_fd = open_directory(path)
    summaries = []
    try:
        for _, name in owners(spool_fd):
            try:
                owner_fd = open_owner(spool_fd, name)
            except Unsafe:
                summaries.append(_unsafe(path, name))
                continue
            except OSError:
                continue
            try:
                summaries.append(_summary(path, name, owner_fd))
            finally:
                os.close(owner_fd)
    finally:
        os.close(spool_fd)
    return summaries
