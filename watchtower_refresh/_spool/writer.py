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
new segment): the append path is one ``write`` on an open descriptor, as before, and one
store of the record's id into the owner's mapped tail file (:mod:`.tail`).

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
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .._exceptions import ConfigurationError
from . import forks
from .adoption import Adoption
from .backlog import Backlog
from .current import CurrentSegment
from .failures import Failures
from .format import FRAME, FRAME_SIZE, MAX_FRAME, RECORD, SYNC, SpooledRecord, crc32
from .layout import Unsafe, refusal, warn_once
from .layout import warn as default_warn
from .owner import Owner
from .stats import SpoolStats

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_SEGMENT_BYTES", "Spool"]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024


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
        self.directory = directory
        self.group = group
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._stats = SpoolStats()
        self._owner = Owner(directory, group, max_bytes)
        # Where the append path stores each record's id: the owner's mapped tail file.
        self._tail = self._owner.tail.slot
        # Re-entrant: a signal handler that closes the handler may interrupt a roll-over.
        self._lock = threading.RLock()
        self._appending = False  # an append is under way (its thread holds the handler's lock)
        # The segment file appended to: its descriptor, offset and budget, one comparison
        # on the append path.
        self._segment = CurrentSegment(self._owner, segment_bytes, fsync=fsync)
        self._next_id = 1
        self._floor_id = 1  # acks below it belong to a parent process's writer
        self._failures = Failures(warn)
        self._closed = False
        self._streams: dict[str, bytes] = {}
        self._backlog = Backlog()
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
            spool._owner.open_directory()
            spool._start_owner()
        except OSError as exc:
            spool._release()
            if isinstance(exc, Unsafe):  # said once per directory and problem
                warn_once(str(path), exc.problem, say, refusal(path, exc))
            else:
                say(refusal(path, exc))
            return None
        return spool

    def _start_owner(self) -> None:
        self._owner.start(self._next_id, self.segment_bytes)
        self._tail = self._owner.tail.slot
        self._segment.start(self._next_id)

    # -- the append path

    @property
    def owner_directory(self) -> Path | None:
        """The writer's own directory, once it has one (a forked child gets its own)."""
        return self._owner.path

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
        written: int | None = None
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
            segment = self._segment
            if size <= segment.budget or self._make_room(size):
                segment.write(FRAME.pack(SYNC, len(body), crc32(body)) + body)
                # A store into the mapped tail file, no system call: after the last intact
                # frame of a dead writer, it tells how many records followed.
                self._tail[0] = record_id
                if self.fsync:  # the record is on the disk (``write``): now its id too
                    self._owner.tail.sync()
                self._next_id = record_id + 1
                written = record_id
        except OSError as exc:
            with self._lock:
                self._write_failed(exc)
        except Exception:  # never raise into emit(): struct range errors and the like
            self._stats.errors += 1
        self._appending = False
        if self._closed:  # closed while this append was under way: finish the close
            self._finish_close()
        return written

    def _make_room(self, size: int) -> bool:
        """The slow path of append: open, roll over, or refuse; True when it may write."""
        with self._lock:
            return self._make_room_locked(size)

    def _make_room_locked(self, size: int) -> bool:
        if self._segment.fd < 0 and not self._reopen():
            return False
        if size > MAX_FRAME:
            self._stats.errors += 1
            return False
        try:
            fits = self._segment.fits(size, self._next_id)
        except OSError as exc:  # rolling over failed
            self._write_failed(exc)
            return False
        self._stats.full += not fits
        return fits

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
        if self._closed:
            return False
        if self._failures.pausing():  # still full, or still failing, until the retry
            self._count_failure(full=self._failures.disk_full)
            return False
        try:
            if self._owner.path is None:
                self._start_owner()
            else:
                self._segment.begin(self._next_id)
        except OSError as exc:
            self._write_failed(exc)
            return False
        return True

    def _write_failed(self, exc: OSError) -> None:
        self._count_failure(full=self._failures.write_failed(exc))
        self._segment.drop(self._next_id)
        if not self._closed:
            self._failures.say(
                f"cannot write to the spool in {self.directory} ({exc.strerror or exc}); "
                "records are kept in memory only until it works again"
            )

    def _count_failure(self, *, full: bool) -> None:
        self._stats.full += full  # a full file system is a full spool
        self._stats.errors += not full

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
                owner_fd = self._owner.fd
                segments = self._owner.listing(self._next_id)
                current_end = self._segment.offset
            if owner_fd < 0:
                return []
            found, corrupt = self._backlog.read(
                owner_fd,
                segments,
                current_end,
                start_id,
                self._acked,
                max_records=max_records,
                max_bytes=max_bytes,
            )
            self._stats.corrupt += corrupt
            return found
        except Exception:
            self._stats.errors += 1
            return []

    def _acked(self, record_id: int) -> bool:
        with self._lock:
            return self._owner.is_acked(record_id, self._floor_id, self._next_id)

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
                acked, failed = self._owner.settle(ids, self._floor_id, self._next_id)
                self._stats.acked += acked
                if acked:
                    self._segment.rebudget()
                for exc in failed:
                    # Unrecorded, these come back after a crash: duplicates, not loss.
                    self._ack_failed(exc)
        except Exception as exc:
            self._ack_failed(exc)

    def _ack_failed(self, exc: Exception) -> None:
        self._stats.errors += 1
        self._failures.say(
            f"cannot record acknowledgements in the spool in {self.directory}: {exc}"
        )

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
            self._segment.close(self._next_id)
            self._owner.remove_if_done()
        self._release()

    def _release(self) -> None:
        self._owner.release()
        self._tail = self._owner.tail.slot
        forks.LIVE.discard(self)

    def _forget_after_fork(self) -> None:
        self._lock = threading.RLock()
        self._appending = False
        self._segment.forget_after_fork()
        self._owner.forget_after_fork()
        self._tail = self._owner.tail.slot
        self._floor_id = self._next_id
        self._backlog = Backlog()
        self._failures.forget_after_fork()
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
