"""The process's own writer: append each record, acknowledge it once settled.

Use from a handler::

    spool = Spool.open(spool_dir, group)      # lazily, at the first emit() of a process
    record_id = spool.append(stream, timestamp_ms, message)   # in emit(), before return
    ...                                        # queue (record_id, event); None: not on disk
    spool.ack(ids)                             # after a batch is accepted or rejected
    spool.backlog(first_unqueued_id)           # memory queue full: read the rest back
    spool.close()                              # after the last ack, at close()

Guarantees: ``append`` returns only after one ``os.write`` of the whole frame succeeded (in
the kernel's page cache; ``fsync=True`` adds an ``fsync`` per record for a power cut). An
acknowledgement is in the ack file when ``ack`` returns. Nothing on the append or ack path
raises: failures are counted in ``stats`` and the first I/O failure is one warning.

Every check of the directory is made when the writer opens (and at each roll-over into a
new segment): the append path is one ``write`` on an open descriptor, as before.

Limits: ``max_bytes`` covers every owner directory of this uid in the directory. Each writer
counts its own bytes exactly and re-measures the others' when it starts a segment and, at
most every 0.5 s, when it would refuse. Appends come from one thread at a time (the
handler's lock) and take no lock of their own in the common case, so a signal handler that
logs in the middle of one cannot deadlock: its record is kept in memory only. Acks may come
from any thread. A forked child never writes into its parent's files: the first append
after a fork opens the child's own owner directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .._exceptions import ConfigurationError
from . import forks
from .adoption import Adoption
from .backlog import read_backlog
from .format import (
    ACKS_HEADER,
    FORMAT_VERSION,
    FRAME,
    FRAME_SIZE,
    INDEX_HEADER,
    MAX_FRAME,
    RECORD,
    SEGMENT_HEADER,
    SYNC,
    SpooledRecord,
    crc32,
    encode_acks,
    encode_frame,
)
from .layout import (
    INDEX_NAME,
    Unsafe,
    append_file,
    group_key,
    make_owner,
    open_directory,
    open_file,
    others_bytes,
    remove_owner,
    unlink_file,
    warn_once,
)
from .layout import warn as default_warn
from .segments import Segment, SegmentBook
from .stats import SpoolStats

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_SEGMENT_BYTES", "Spool"]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
RESCAN_SECONDS = 0.5
RETRY_SECONDS = 1.0
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
# A full file system is a full spool: counted as such, not as an I/O error.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Spool:
    """The writer of one handler in one process: append, acknowledge, read its own back.

    Build it with :meth:`Spool.open`. Appends come from one thread at a time; ``ack`` may be
    called from any thread. Records of a spool closed before all were acknowledged stay on
    disk for the next adopter.
    """

    def __init__(
        self,
        directory: Path,
        group: str,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync: bool,
        warn: Callable[[str], None] = default_warn,
    ) -> None:
        """Use :meth:`Spool.open`, which validates the arguments and the directory."""
        self._warn = warn
        self.directory = directory
        self.group = group
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._stats = SpoolStats()
        self._key = group_key(group)
        # Re-entrant: a signal handler that closes the handler may interrupt a roll-over.
        self._lock = threading.RLock()
        self._appending = False  # an append is under way (its thread holds the handler's lock)
        self._dir_fd = -1  # the spool directory, checked once at open
        self._owner: Path | None = None
        self._owner_fd = -1
        self._indexed = 0  # the first id last named in the owner's index (0: no index yet)
        self._lock_fd = -1
        self._fd = -1
        self._offset = 0  # bytes in the current segment file
        self._book = SegmentBook()
        self._next_id = 1
        self._floor_id = 1  # acks below it belong to a parent process's writer
        self._finished_bytes = 0  # own bytes outside the current segment: others, ack files
        self._room = 0  # max_bytes less others' bytes and ours finished: what may be written
        # What the next frames may take without a look at segment size, max_bytes or the
        # fd: one comparison on the append path. Zero while there is no segment to write.
        self._budget = 0
        self._scanned_at = 0.0
        self._retry_at = 0.0
        self._disk_full = False  # the last write failed for want of space
        self._warned = False
        self._closed = False
        self._streams: dict[str, bytes] = {}
        self._backlog_hint: tuple[int, int, int] | None = None  # next id, segment, byte
        forks.LIVE.add(self)

    # -- opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        group: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> Spool | None:
        """Open a writer for ``group`` in ``directory``, or warn once and return None.

        Args:
            directory: An existing directory shared by every process that spools, owned by
                this process's uid or root, and sticky if group or others may write to it.
            group: The log group name the records are for.
            max_bytes: The most the whole directory may hold, in bytes; appends beyond it
                are refused. Default 512 MiB.
            segment_bytes: Size in bytes at which a segment file is closed and a new one
                begun. Default 4 MiB.
            fsync: ``fsync`` every record, so it survives a power cut too (slow).
            warn: Says what goes wrong (a directory that cannot be used, a failed write);
                default ``warnings.warn`` with ``WatchtowerRefreshWarning``. The handler
                passes its own, which never warns while it holds its lock.

        Returns:
            The writer, or None when the directory is missing, not a directory, not
            writable or not safe (see :mod:`.layout`): one ``WatchtowerRefreshWarning``
            says so and the caller goes on in memory only.

        Raises:
            ConfigurationError: ``group`` is empty or a size is out of range.
        """
        _validate(group, max_bytes, segment_bytes)
        path = Path(directory)
        say = warn or default_warn
        spool = cls(
            path, group, max_bytes=max_bytes, segment_bytes=segment_bytes, fsync=fsync, warn=say
        )
        try:
            spool._dir_fd = open_directory(path)
            spool._start_owner()
        except Unsafe as exc:
            spool._release()
            warn_once(
                str(path),
                exc.problem,
                say,
                f"spool directory {path} is not safe to use ({exc.problem}): records are "
                "kept in memory only, and nothing in it is replayed",
            )
            return None
        except OSError as exc:
            spool._release()
            problem = exc.strerror or str(exc)
            if exc.errno == errno.ENOTDIR:
                problem = "is not a directory"
            elif exc.errno == errno.ENOENT and not os.path.lexists(path):
                problem = "does not exist"
            say(
                f"spool directory {path} cannot be used ({problem}); records "
                "are kept in memory only, as without a spool"
            )
            return None
        return spool

    def _start_owner(self) -> None:
        pid = os.getpid()
        name = f"g{self._key}-p{pid}-t{_now_ms()}-{secrets.token_hex(4)}"
        meta = {
            "version": FORMAT_VERSION,
            "group": self.group,
            "pid": pid,
            "host": socket.gethostname(),
            "created_ms": _now_ms(),
        }
        owner_fd, lock_fd = make_owner(self._dir_fd, name, json.dumps(meta).encode())
        self._owner_fd, self._lock_fd = owner_fd, lock_fd
        self._indexed = 0
        self._owner = self.directory / name
        self._finished_bytes = self._offset = 0
        self._rescan()
        self._open_segment()

    def _open_segment(self) -> None:
        segment = Segment(self._next_id)
        name = f"{segment.first_id:016x}.seg"
        # The index first: a segment never exists that the index does not name, so a
        # reader knows where each segment's ids end even when the next one is settled.
        if self._indexed != segment.first_id:  # not again after a failed write
            entry = encode_frame(segment.first_id.to_bytes(8, "little"))
            if not self._indexed:
                entry = INDEX_HEADER + entry
            self._finished_bytes += append_file(self._owner_fd, INDEX_NAME, entry, verify=False)
            self._indexed = segment.first_id
        fd = open_file(self._owner_fd, name, _FLAGS, verify=False)
        try:
            if os.write(fd, SEGMENT_HEADER) != len(SEGMENT_HEADER):
                raise OSError(errno.ENOSPC, "short write of a segment header")
            if self.fsync:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            unlink_file(self._owner_fd, name)
            raise
        self._fd = fd
        self._offset = segment.bytes
        self._book.segments[segment.first_id] = segment
        self._book.current = segment
        self._rebudget()

    def _rebudget(self) -> None:
        if self._fd < 0:
            self._budget = 0
        else:
            limit = min(self.segment_bytes, self._room, self._offset + MAX_FRAME)
            self._budget = limit - self._offset

    # -- the append path

    @property
    def owner_directory(self) -> Path | None:
        """The writer's own directory, once it has one (a forked child gets its own)."""
        return self._owner

    def append(
        self, stream: str, timestamp_ms: int, message: str, text: bytes | None = None
    ) -> int | None:
        """Write one record; return its id once it is in the kernel's hands, else None.

        One ``os.write`` of one frame. Never raises. Appends come from one thread at a
        time (the handler's lock), so the common case takes no lock: ``ack`` and
        ``backlog`` on other threads read what it writes, and every step that changes the
        segment list (opening, rolling over, a failed write) is taken under the lock.

        Args:
            stream: The log stream name.
            timestamp_ms: The record's timestamp, milliseconds since the epoch.
            message: The formatted message.
            text: ``message`` already encoded as UTF-8 (lone surrogates kept with
                ``surrogatepass``), when the caller has it: it is written as it is.

        Returns:
            The record's id, increasing per writer: keep it with the queued event and pass
            it to :meth:`ack` once the event is settled. None when the record was not
            spooled: the directory holds ``max_bytes`` (``stats.full`` counts it), a write
            failed (``stats.errors``; the first failure warns once, and the next append
            after a second tries a new segment), the spool is closed, or this call
            interrupted another append on the same thread (a signal handler that logs:
            that record is kept in memory only, counted in ``stats.errors``).
        """
        if self._appending:
            self._stats.errors += 1
            return None
        self._appending = True
        try:
            encoded = self._streams.get(stream)
            if encoded is None:
                encoded = self._encode_stream(stream)
            if text is None:
                try:
                    text = message.encode()
                except UnicodeEncodeError:  # lone surrogates: kept, to come back unchanged
                    text = message.encode("utf-8", "surrogatepass")
            record_id = self._next_id
            body = RECORD.pack(record_id, timestamp_ms, len(encoded)) + encoded + text
            size = len(body) + FRAME_SIZE
            if size > self._budget and not self._make_room(size):
                self._appending = False
                return None
            written = os.write(self._fd, FRAME.pack(SYNC, len(body), crc32(body)) + body)
            if written != size or self.fsync:
                self._finish_write(written, size)
            self._offset += size
            self._budget -= size
            self._next_id = record_id + 1
            self._appending = False
            if self._closed:  # closed while this append was under way: finish the close
                self._finish_close()
            return record_id
        except OSError as exc:
            with self._lock:
                self._write_failed(exc)
        except Exception:  # never raise into emit(): struct range errors and the like
            self._stats.errors += 1
        self._appending = False
        if self._closed:
            self._finish_close()
        return None

    def _finish_write(self, written: int, size: int) -> None:
        """After the write: a short one is an error; with ``fsync``, to the disk."""
        if written != size:
            # A partial frame is damage the reader skips; the segment is done.
            self._offset += written
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(self._fd)

    def _make_room(self, size: int) -> bool:
        """The slow path of append: open, roll over, or refuse; True when it may write."""
        with self._lock:
            return self._make_room_locked(size)

    def _make_room_locked(self, size: int) -> bool:
        if self._fd < 0 and not self._reopen():
            return False
        if size > MAX_FRAME:
            self._stats.errors += 1
            return False
        current = self._book.current
        assert current is not None
        if self._offset + size > self.segment_bytes and self._next_id > current.first_id:
            try:
                self._roll_over()
            except OSError as exc:
                self._write_failed(exc)
                return False
        if self._offset + size > self._room:
            if time.monotonic() - self._scanned_at >= RESCAN_SECONDS:
                self._rescan()
            if self._offset + size > self._room:
                self._stats.full += 1
                return False
        return True

    @property
    def stats(self) -> SpoolStats:
        """What this writer did (since the fork, in a forked child)."""
        self._stats.appended = self._next_id - self._floor_id
        return self._stats

    def _encode_stream(self, stream: str) -> bytes:
        encoded = stream.encode("utf-8", "surrogatepass")
        if len(self._streams) >= 1024:
            self._streams.clear()
        self._streams[stream] = encoded
        return encoded

    def _reopen(self) -> bool:
        """Open a writer after a fork or a failed write; False while that is not possible."""
        if self._closed or time.monotonic() < self._retry_at:
            if not self._closed:  # still full, or still failing, until the retry
                self._stats.full += self._disk_full
                self._stats.errors += not self._disk_full
            return False
        try:
            if self._owner is None:
                self._start_owner()
            else:
                self._open_segment()
        except OSError as exc:
            self._write_failed(exc)
            return False
        return True

    def _write_failed(self, exc: OSError) -> None:
        self._disk_full = exc.errno in _FULL_ERRNOS
        if self._disk_full:
            self._stats.full += 1  # a full file system is a full spool
        else:
            self._stats.errors += 1
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
            self._finish_current()
        if not self._warned and not self._closed:
            self._warned = True
            self._warn(
                f"cannot write to the spool in {self.directory} ({exc.strerror or exc}); "
                "records are kept in memory only until it works again"
            )

    def _roll_over(self) -> None:
        os.close(self._fd)
        self._fd = -1
        self._finish_current()
        self._rescan()
        self._open_segment()

    def _finish_current(self) -> None:
        segment = self._book.current
        if segment is None:
            return
        segment.count = self._next_id - segment.first_id
        segment.bytes = self._offset
        self._finished_bytes += self._offset
        self._offset = 0
        segment.closed = True
        self._book.current = None
        self._rebudget()
        self._delete_if_done(segment)

    def _rescan(self) -> None:
        """Measure what this uid's other owner directories hold, in bytes."""
        self._scanned_at = time.monotonic()
        own = self._owner.name if self._owner is not None else None
        total = others_bytes(self._dir_fd, own)
        self._room = self.max_bytes - total - self._finished_bytes
        self._rebudget()

    # -- reading back one's own records

    def backlog(
        self, start_id: int, *, max_records: int = 1000, max_bytes: int = 1024 * 1024
    ) -> list[SpooledRecord]:
        """This writer's own records from ``start_id`` on, not yet acknowledged, oldest first.

        For what the handler keeps on disk only: when its memory queue is full (a long
        outage), it goes on appending, remembers the first id it did not queue, and reads
        the backlog back from there as the queue drains, passing the id after the last
        record returned. Reads files without holding up ``append``: a call that continues
        where the previous one stopped starts at the byte where it stopped. Never raises;
        damaged records are skipped and counted in ``stats.corrupt``.

        Args:
            start_id: The first id wanted.
            max_records: Most records returned.
            max_bytes: Most message characters returned (one larger record still comes
                back on its own).
        """
        try:
            with self._lock:
                owner_fd = self._owner_fd
                segments = [
                    (first, self._book.count(segment, self._next_id), segment is self._book.current)
                    for first, segment in sorted(self._book.segments.items())
                ]
                current_end = self._offset
                hint = self._backlog_hint
            if owner_fd < 0:
                return []
            found, hint, corrupt = read_backlog(
                owner_fd,
                segments,
                current_end,
                hint,
                start_id,
                self._acked,
                max_records=max_records,
                max_bytes=max_bytes,
            )
            self._stats.corrupt += corrupt
            if hint is not None:
                self._backlog_hint = hint
            return found
        except Exception:
            self._stats.errors += 1
            return []

    def _acked(self, record_id: int) -> bool:
        with self._lock:
            return self._book.is_acked(record_id, self._floor_id, self._next_id)

    # -- acknowledgements

    def ack(self, ids: Iterable[int]) -> None:
        """Record that these ids left for good: accepted by the service, or rejected by it.

        Acks may arrive in any order and from any thread. Unknown ids, ids acked before and
        ids of a parent process's writer (after a fork) are ignored. The acknowledgements
        are in the ack files when this returns (one write per segment touched); a segment
        whose records are all acknowledged is deleted. Acks after :meth:`close` are ignored:
        the owner may be another process's to replay by then. Never raises.

        Args:
            ids: Ids returned by :meth:`append`.
        """
        try:
            with self._lock:
                if self._closed:
                    return
                touched = self._book.mark(ids, self._floor_id, self._next_id)
                for segment, offsets in touched.items():
                    self._stats.acked += len(offsets)
                    if not segment.settled:
                        try:
                            self._write_acks(segment, offsets)
                        except OSError as exc:
                            # Unrecorded, these come back after a crash: duplicates, not loss.
                            self._ack_failed(exc)
                    self._delete_if_done(segment)
        except Exception as exc:
            self._ack_failed(exc)

    def _ack_failed(self, exc: Exception) -> None:
        self._stats.errors += 1
        if not self._warned:
            self._warned = True
            self._warn(f"cannot record acknowledgements in the spool in {self.directory}: {exc}")

    def _write_acks(self, segment: Segment, offsets: list[int]) -> None:
        data = encode_acks(offsets)
        if segment.ack_bytes == 0:
            data = ACKS_HEADER + data
        written = append_file(self._owner_fd, f"{segment.first_id:016x}.ack", data, verify=False)
        segment.ack_bytes += written
        self._finished_bytes += written
        self._room -= written
        self._rebudget()

    def _delete_if_done(self, segment: Segment) -> None:
        if not segment.settled or self._owner is None:
            return
        name = f"{segment.first_id:016x}"
        unlink_file(self._owner_fd, f"{name}.seg")
        unlink_file(self._owner_fd, f"{name}.ack")
        self._finished_bytes -= segment.bytes + segment.ack_bytes
        self._room += segment.bytes + segment.ack_bytes
        self._rebudget()
        del self._book.segments[segment.first_id]

    # -- adoption, closing, forks

    def adopt(self, *, batch_records: int = 1000, batch_bytes: int = 1024 * 1024) -> Adoption:
        """Adopt the records dead owners of this spool's group left; see :func:`adopt`."""
        return Adoption(
            self.directory, self.group, batch_records=batch_records, batch_bytes=batch_bytes
        )

    def close(self) -> None:
        """Stop writing. With every record acknowledged, the owner directory is removed;
        otherwise it stays, its lock released, for the next adopter. Never raises."""
        with contextlib.suppress(Exception), self._lock:
            if self._closed:
                return
            self._closed = True
            if self._appending:
                # A signal handler closes us in the middle of this thread's append: the
                # append finishes the close once its record is written.
                return
        self._finish_close()

    def _finish_close(self) -> None:
        with contextlib.suppress(Exception), self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._finish_current()
            if self._owner is not None and not self._book.segments:
                remove_owner(self._dir_fd, self._owner.name, self._owner_fd)
        self._release()

    def _release(self) -> None:
        for fd in (self._lock_fd, self._owner_fd, self._dir_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock_fd = self._owner_fd = self._dir_fd = -1
        forks.LIVE.discard(self)

    def _forget_after_fork(self) -> None:
        # The spool directory's descriptor stays: the child's owner goes there too.
        self._lock = threading.RLock()
        self._appending = False
        for fd in (self._fd, self._lock_fd, self._owner_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = self._owner_fd = -1
        self._owner = None
        self._book = SegmentBook()
        self._floor_id = self._next_id
        self._finished_bytes = self._offset = self._budget = 0
        self._backlog_hint = None
        self._retry_at = 0.0
        self._stats = SpoolStats()


def _validate(group: str, max_bytes: int, segment_bytes: int) -> None:
    if not group:
        message = "group must be a non-empty log group name"
        raise ConfigurationError(message)
    if isinstance(segment_bytes, bool) or not isinstance(segment_bytes, int):
        message = f"segment_bytes must be a whole number of bytes, not {segment_bytes!r}"
        raise ConfigurationError(message)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        message = f"max_bytes must be a whole number of bytes, not {max_bytes!r}"
        raise ConfigurationError(message)
    if segment_bytes < 4096:
        message = f"segment_bytes must be at least 4096 bytes, not {segment_bytes}"
        raise ConfigurationError(message)
    if max_bytes < segment_bytes:
        message = f"max_bytes ({max_bytes}) must be at least segment_bytes ({segment_bytes})"
        raise ConfigurationError(message)
