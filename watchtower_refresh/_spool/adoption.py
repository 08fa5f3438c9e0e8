"""Adopting what dead processes left: claim each dead owner once, replay it, settle it.

Exactly one live process adopts each dead owner: adopters take the owner's lock with
``LOCK_EX | LOCK_NB`` and check the lock file is still the one in the directory. An adopter
that dies mid-replay releases the lock in turn; what it acknowledged is in the ack files, so
the next adopter replays only the rest. Records lost to damage are counted in ``corrupt``
(see :mod:`.reading`); a file is deleted only once its records were delivered or counted.

An owner is adopted only when its directory passes the checks of :mod:`.layout` (ours, not
writable by others, no symlink). One whose ``owner.lock`` is missing (an interrupted
removal, a cleaner of old files) is adopted when the host in its ``meta.json`` is this one
and no process has its pid: a live writer would have that pid, so its writer has ended; the
lock is then made again with ``O_EXCL``, so two adopters still cannot both claim it.
Otherwise one warning per process names the directory and why it waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from .._exceptions import ConfigurationError
from . import forks
from .format import ACKS_HEADER, FORMAT_VERSION, SpooledRecord, encode_acks
from .layout import (
    ACKS_RE,
    ADOPTER_NAME,
    LOCK_NAME,
    NEW_PREFIX,
    OWNER_RE,
    Unsafe,
    append_file,
    group_key,
    list_entries,
    open_directory,
    open_file,
    open_owner,
    read_meta,
    remove_owner,
    unlink_file,
    warn,
    warn_once,
)
from .reading import owners, read_index, read_segment, segment_end, segments_of, written_end
from .stats import SpoolStats

__all__ = ["Adoption", "Damage", "SpooledBatch", "adopt"]

STALE_NEW_SECONDS = 60.0


class Damage(NamedTuple):
    """Records of one segment lost to damage, placed by the readable records around them.

    Their own stream names and timestamps went with them: when every readable record of the
    segment went to one stream, they are taken to have gone there too, within the readable
    records' times.
    """

    stream: str
    first_ms: int
    """The earliest readable record's timestamp, in milliseconds since the epoch."""
    last_ms: int
    """The latest readable record's timestamp, in milliseconds since the epoch."""
    lost: int
    """Records lost (as counted in ``stats.corrupt``)."""


class _ClaimedSegment:
    __slots__ = ("ack_bytes", "claim", "first_id", "name", "outstanding", "read_all")

    def __init__(self, claim: _Claim, first_id: int) -> None:
        self.claim = claim
        self.first_id = first_id
        self.name = f"{first_id:016x}"
        self.outstanding: set[int] = set()
        self.ack_bytes = 0
        self.read_all = False


class _Claim:
    """A dead owner's directory, held by this process through its lock."""

    def __init__(
        self, directory: Path, name: str, fds: tuple[int, int, int], stats: SpoolStats
    ) -> None:
        self.owner = directory / name
        self.name = name
        self.spool_fd, self.owner_fd, self.lock_fd = fds
        self.stats = stats
        self.lock = threading.Lock()
        self.open_segments: set[_ClaimedSegment] = set()
        self.read_all = False
        self.keep = False  # files of a newer format stay, and so does the directory
        forks.LIVE.add(self)

    def ack(self, segment: _ClaimedSegment, ids: Iterable[int]) -> None:
        with self.lock:
            if self.lock_fd < 0:
                return
            offsets = []
            for record_id in ids:
                offset = record_id - segment.first_id
                if offset in segment.outstanding:
                    segment.outstanding.discard(offset)
                    offsets.append(offset)
            if not offsets:
                return
            self.stats.acked += len(offsets)
            if not (segment.read_all and not segment.outstanding):
                data = encode_acks(offsets)
                if segment.ack_bytes == 0:
                    data = ACKS_HEADER + data
                name = f"{segment.name}.ack"
                segment.ack_bytes += append_file(self.owner_fd, name, data, verify=True)
            self.settle(segment)

    def settle(self, segment: _ClaimedSegment | None) -> None:
        """Delete a segment once every record was read and acknowledged; then the owner."""
        if segment is not None and segment.read_all and not segment.outstanding:
            unlink_file(self.owner_fd, f"{segment.name}.seg")
            unlink_file(self.owner_fd, f"{segment.name}.ack")
            self.open_segments.discard(segment)
        if self.read_all and not self.open_segments:
            if not self.keep:
                remove_owner(self.spool_fd, self.name, self.owner_fd)
            self.release()

    def release(self) -> None:
        for fd in (self.lock_fd, self.owner_fd, self.spool_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.lock_fd = self.owner_fd = self.spool_fd = -1
        forks.LIVE.discard(self)

    def _forget_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.release()


class SpooledBatch:
    """Records of one dead owner's segment, oldest first, to deliver and then acknowledge.

    Attributes:
        records: The records, in the order they were appended.
        owner: The owner directory they come from.
    """

    __slots__ = ("_segment", "owner", "records")

    def __init__(self, segment: _ClaimedSegment, records: list[SpooledRecord]) -> None:
        self._segment = segment
        self.owner = segment.claim.owner
        self.records = records

    def ack(self, ids: Iterable[int] | None = None) -> None:
        """Acknowledge some of this batch's records by id, or all of them. Never raises."""
        try:
            chosen = [r.id for r in self.records] if ids is None else ids
            self._segment.claim.ack(self._segment, chosen)
        except Exception as exc:
            self._segment.claim.stats.errors += 1
            warn(f"cannot record acknowledgements in the spool at {self.owner}: {exc}")


class Adoption:
    """Claims dead owners of one log group, one at a time, and yields their records.

    Iterate it for :class:`SpooledBatch` objects, oldest owner first; acknowledge each
    batch's records once settled. Each owner stays claimed (locked) until all its records are
    acknowledged; :meth:`close` releases what is left, unacknowledged, for a later adopter.
    Owners that die while this process lives are found by adopting again later.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        group: str,
        *,
        batch_records: int = 1000,
        batch_bytes: int = 1024 * 1024,
    ) -> None:
        """See :func:`adopt`."""
        if batch_records < 1 or batch_bytes < 1:
            message = "batch_records and batch_bytes must be at least 1"
            raise ConfigurationError(message)
        self.directory = Path(directory)
        self.group = group
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.stats = SpoolStats()
        self._damage: list[Damage] = []
        self._claims: list[_Claim] = []
        self._closed = False

    def __enter__(self) -> Adoption:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[SpooledBatch]:
        try:
            spool_fd = open_directory(self.directory)
        except Unsafe as exc:
            warn_once(
                str(self.directory),
                exc.problem,
                warn,
                f"spool directory {self.directory} is not safe to use ({exc.problem}): "
                "records are kept in memory only, and nothing in it is replayed",
            )
            return
        except OSError:
            return
        try:
            found = owners(spool_fd, group_key(self.group))
            self._clean_unfinished(spool_fd)
            for _, name in found:
                if self._closed:
                    return
                claim = self._claim(spool_fd, name)
                if claim is not None:
                    yield from self._replay(claim)
        except OSError:
            return
        finally:
            os.close(spool_fd)

    def _refuse(self, name: str, problem: str) -> None:
        path = self.directory / name
        warn_once(
            str(path),
            problem,
            warn,
            f"spool owner directory {path} is not adopted ({problem}): its records are "
            "not replayed",
        )

    def _claim(self, spool_fd: int, name: str) -> _Claim | None:
        try:
            owner_fd = open_owner(spool_fd, name)
        except Unsafe as exc:
            self._refuse(name, exc.problem)
            return None
        except OSError:
            return None  # settled meanwhile, or a symlink: not an owner directory
        lock_fd = self._lock(spool_fd, name, owner_fd)
        if lock_fd < 0:
            os.close(owner_fd)
            return None
        meta = read_meta(owner_fd)
        group = meta.get("group", self.group)
        version = meta.get("version", FORMAT_VERSION)
        if group != self.group or not isinstance(version, int) or version > FORMAT_VERSION:
            if isinstance(version, int) and version > FORMAT_VERSION:
                self.stats.newer_files += 1
            os.close(lock_fd)
            os.close(owner_fd)
            return None
        with contextlib.suppress(OSError):
            fd = open_file(owner_fd, ADOPTER_NAME, os.O_WRONLY | os.O_CREAT)
            try:
                os.ftruncate(fd, 0)  # only once it is known to be a file of ours
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
        claim = _Claim(self.directory, name, (os.dup(spool_fd), owner_fd, lock_fd), self.stats)
        self._claims.append(claim)
        self.stats.owners_adopted += 1
        return claim

    def _lock(self, spool_fd: int, name: str, owner_fd: int) -> int:
        """The owner's lock, taken; -1 when its writer or another adopter holds it."""
        try:
            fd = open_file(owner_fd, LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            fd = self._restore_lock(spool_fd, name, owner_fd)
        except Unsafe as exc:
            self._refuse(name, f"its {LOCK_NAME} is {exc.problem.removeprefix('it is ')}")
            return -1
        except OSError:
            return -1
        if fd < 0:
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The lock file must still be the one in the directory: an adopter that just
            # finished unlinks it before releasing the lock.
            here = os.stat(LOCK_NAME, dir_fd=owner_fd, follow_symlinks=False)
            if here.st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(name)
        except OSError:
            os.close(fd)
            return -1
        return fd

    def _restore_lock(self, spool_fd: int, name: str, owner_fd: int) -> int:
        """Make the lock of an owner that has none again, when its writer has surely ended."""
        if not list(list_entries(owner_fd)):
            return -1  # empty: nothing waits in it
        match = OWNER_RE.match(name)
        pid = int(match.group(2)) if match else 0
        host = read_meta(owner_fd).get("host")
        if host != socket.gethostname():
            self._refuse(
                name,
                f"it has no {LOCK_NAME} and was written on host {host!r}, so whether its "
                "writer has ended cannot be told here; remove it once it has",
            )
            return -1
        if _running(pid):
            self._refuse(
                name,
                f"it has no {LOCK_NAME} and process {pid} is running, which may be its "
                "writer; it is adopted once that process has ended",
            )
            return -1
        try:
            return open_file(owner_fd, LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:  # another adopter made it first: race for it as usual
            return open_file(owner_fd, LOCK_NAME, os.O_RDWR)

    def _replay(self, claim: _Claim) -> Iterator[SpooledBatch]:
        try:
            segments = segments_of(claim.owner_fd)
        except OSError:
            segments = []
            claim.keep = True
        index = read_index(claim.owner_fd)
        last = written_end(claim.owner_fd, index, [first for first, _ in segments])
        for first_id, _ in segments:
            if self._closed or claim.lock_fd < 0:
                return
            end = segment_end(index, first_id)
            written = last[1] if last is not None and last[0] == first_id else None
            try:
                contents = read_segment(claim.owner_fd, first_id, end, written)
            except OSError:  # a passing failure (too many open files): a later pass
                claim.keep = True
                continue
            if contents.newer:
                self.stats.newer_files += 1
                claim.keep = True
                continue
            self.stats.corrupt += contents.lost
            streams = {record.stream for record in contents.records}
            if contents.lost and len(streams) == 1:
                times = [record.timestamp_ms for record in contents.records]
                self._damage.append(Damage(streams.pop(), min(times), max(times), contents.lost))
            segment = _ClaimedSegment(claim, first_id)
            with contextlib.suppress(OSError):  # the dead owner's acks: append after them
                segment.ack_bytes = os.stat(
                    f"{segment.name}.ack", dir_fd=claim.owner_fd, follow_symlinks=False
                ).st_size
            pending = [r for r in contents.records if r.id - first_id not in contents.acked]
            with claim.lock:
                segment.outstanding = {r.id - first_id for r in pending}
                claim.open_segments.add(segment)
                segment.read_all = True  # what is not outstanding now never will be
            for batch in self._batches(pending):
                if self._closed or claim.lock_fd < 0:
                    return
                self.stats.adopted += len(batch)
                yield SpooledBatch(segment, batch)
            with claim.lock:
                claim.settle(segment)
        with claim.lock:
            claim.read_all = True
            if claim.owner_fd >= 0:
                _remove_orphans(claim.owner_fd)
            claim.settle(None)

    def _batches(self, records: list[SpooledRecord]) -> Iterator[list[SpooledRecord]]:
        batch: list[SpooledRecord] = []
        size = 0
        for record in records:
            length = len(record.message)
            if batch and (len(batch) >= self.batch_records or size + length > self.batch_bytes):
                yield batch
                batch, size = [], 0
            batch.append(record)
            size += length
        if batch:
            yield batch

    def _clean_unfinished(self, spool_fd: int) -> None:
        """Remove our owner directories whose creator died before renaming them into place
        (never through a symlink, never another user's)."""
        cutoff = time.time() - STALE_NEW_SECONDS
        with contextlib.suppress(OSError):
            for entry in list(list_entries(spool_fd)):
                if not entry.name.startswith(NEW_PREFIX):
                    continue
                with contextlib.suppress(OSError):
                    status = os.stat(entry.name, dir_fd=spool_fd, follow_symlinks=False)
                    if status.st_mtime >= cutoff:
                        continue
                    owner_fd = open_owner(spool_fd, entry.name)
                    try:
                        remove_owner(spool_fd, entry.name, owner_fd)
                    finally:
                        os.close(owner_fd)

    def take_damage(self) -> list[Damage]:
        """The damage found since the last call that can be placed in a stream (see
        ``Damage``); the rest is only counted, in ``stats.corrupt``."""
        damage, self._damage = self._damage, []
        return damage

    def close(self) -> None:
        """Release every claim; unacknowledged records stay for a later adopter."""
        self._closed = True
        for claim in self._claims:
            with claim.lock:
                claim.release()
        self._claims.clear()


def _running(pid: int) -> bool:
    """Whether a process with this pid exists here (one we may not signal exists too)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_orphans(owner_fd: int) -> None:
    """Ack files whose segment is gone (a deletion cut short by death)."""
    with contextlib.suppress(OSError):
        for entry in list(list_entries(owner_fd)):
            match = ACKS_RE.match(entry.name)
            if match:
                try:
                    os.stat(f"{match.group(1)}.seg", dir_fd=owner_fd, follow_symlinks=False)
                except FileNotFoundError:
                    unlink_file(owner_fd, entry.name)


def adopt(
    directory: str | os.PathLike[str],
    group: str,
    *,
    batch_records: int = 1000,
    batch_bytes: int = 1024 * 1024,
) -> Adoption:
    """Adopt what dead owners of ``group`` left in ``directory``: an iterable of batches.

    Nothing is read or claimed until the result is iterated. Each dead owner is claimed by
    exactly one live process; its unacknowledged records come back oldest first, with their
    original ids, timestamps and stream names, in batches of at most ``batch_records``
    records and ``batch_bytes`` characters of message from one segment.

    Args:
        directory: The spool directory.
        group: The log group name.
        batch_records: Most records per batch.
        batch_bytes: Most message characters per batch (a single larger record still
            makes a batch of its own).
    """
    return Adoption(directory, group, batch_records=batch_records, batch_bytes=batch_bytes)
