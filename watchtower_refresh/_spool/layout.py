"""The spool directory: names, the trust checks, and file operations that follow no symlink.

Layout (one directory, many log groups, many processes)::

    DIR/g<group hash>-p<pid>-t<created ms>-<random token>/   one per writer (owner)
        owner.lock        flock(LOCK_EX) held for the writer's whole life
        meta.json         group name, pid, host, creation time, format version
        adopter           pid of the process replaying it, once adopted
        index             the first id of every segment the writer began, in order
        tail              the id of the last record the writer appended (mapped)
        <first id:016x>.seg   segment: file header, then framed records
        <first id:016x>.ack   acknowledgements of that segment, appended per batch

The group hash is the first 16 hex digits of the name's SHA-256, so an observer can pick a
group's owners by name; ``meta.json`` holds the full name. Liveness never rests on the pid:
a writer holds ``flock`` on its ``owner.lock`` for its life, the kernel releases it however
the process ends, and a lock that can be taken means a dead owner. An owner directory is
built under a ``.new-`` name, locked, then renamed into place.

The directory is a trust boundary, as ``~/.ssh`` is for OpenSSH. The spool directory must
be owned by this process's effective uid or by root, and if group or others may write to it,
it must have the sticky bit (as ``/tmp`` has), so that no other user can rename or remove
what is ours in it. An owner directory must be a real directory (not a symlink) owned by
our uid that neither group nor others may write to; every file in it is opened relative to
its directory descriptor with ``O_NOFOLLOW`` and used only when it is a regular file owned
by our uid. Nothing is removed but regular files we own and empty directories we own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from .._exceptions import WatchtowerRefreshWarning

__all__ = [
    "ACKS_RE",
    "ADOPTER_NAME",
    "INDEX_NAME",
    "LOCK_NAME",
    "META_NAME",
    "NEW_PREFIX",
    "OWNER_RE",
    "SEGMENT_RE",
    "TAIL_NAME",
    "Unsafe",
    "append_file",
    "group_key",
    "list_entries",
    "make_owner",
    "open_directory",
    "open_file",
    "open_owner",
    "others_bytes",
    "owner_problem",
    "read_meta",
    "refusal",
    "remove_owner",
    "spool_problem",
    "unlink_file",
    "warn",
    "warn_once",
]

LOCK_NAME = "owner.lock"
META_NAME = "meta.json"
ADOPTER_NAME = "adopter"
INDEX_NAME = "index"
TAIL_NAME = "tail"
NEW_PREFIX = ".new-"
OWNER_RE = re.compile(r"^g([0-9a-f]{16})-p(\d+)-t(\d+)-([0-9a-f]+)$")
SEGMENT_RE = re.compile(r"^([0-9a-f]{16})\.seg$")
ACKS_RE = re.compile(r"^([0-9a-f]{16})\.ack$")
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_WARNED: set[tuple[str, str]] = set()
_MAX_WARNINGS = 20


class Unsafe(OSError):
    """A directory or file in the spool that this process must not trust."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(errno.EPERM, problem)
        self.what = what
        self.problem = problem


def group_key(group: str) -> str:
    """The 16 hex digits that name ``group`` in owner directory names."""
    return hashlib.sha256(group.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def warn(message: str) -> None:
    """Warn with ``WatchtowerRefreshWarning``; never raises (a filter set to "error")."""
    with contextlib.suppress(Exception):
        warnings.warn(message, WatchtowerRefreshWarning, stacklevel=3)


def warn_once(what: str, problem: str, say: Callable[[str], None], message: str) -> None:
    """``say(message)`` once per process for ``what`` and ``problem``; after 20 of them,
    one line says the rest go unreported (another user may make many)."""
    key = (what, problem)
    if key in _WARNED:
        return
    if len(_WARNED) >= _MAX_WARNINGS:
        if ("", "") not in _WARNED:
            _WARNED.add(("", ""))
            say("more spool directories cannot be used; they are not reported one by one")
        return
    _WARNED.add(key)
    say(message)


def refusal(path: Path, exc: OSError) -> str:
    """What to say when the spool directory ``path`` cannot be used, for ``exc`` from
    opening it or starting an owner in it (``Unsafe``: it must not be trusted)."""
    if isinstance(exc, Unsafe):
        return (
            f"spool directory {path} is not safe to use ({exc.problem}): records are "
            "kept in memory only, and nothing in it is replayed"
        )
    problem = exc.strerror or str(exc)
    if exc.errno == errno.ENOTDIR:
        problem = "is not a directory"
    elif exc.errno == errno.ENOENT and not os.path.lexists(path):
        problem = "does not exist"
    return (
        f"spool directory {path} cannot be used ({problem}); records "
        "are kept in memory only, as without a spool"
    )


def spool_problem(status: os.stat_result) -> str | None:
    """Why a spool directory with this status must not be used, or None."""
    uid = os.geteuid()
    if not stat.S_ISDIR(status.st_mode):
        return "it is not a directory"
    if status.st_uid not in (uid, 0):
        return f"it is owned by uid {status.st_uid}, not by this process's uid {uid} or root"
    if status.st_mode & 0o022 and not status.st_mode & stat.S_ISVTX:
        return "group or others may write to it and it has no sticky bit"
    return None


def owner_problem(status: os.stat_result) -> str | None:
    """Why an owner directory with this status must not be used, or None."""
    uid = os.geteuid()
    if not stat.S_ISDIR(status.st_mode):
        return "it is not a directory"
    if status.st_uid != uid:
        return f"it is owned by uid {status.st_uid}, not by this process's uid {uid}"
    if status.st_mode & 0o022:
        return "group or others may write to it"
    return None


def open_directory(path: str | os.PathLike[str]) -> int:
    """Open the spool directory (the configured path may go through symlinks).

    Raises:
        Unsafe: It fails :func:`spool_problem`.
        OSError: It cannot be opened.
    """
    fd = os.open(path, _DIRECTORY)
    problem = spool_problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise Unsafe(os.fspath(path), problem)
    return fd


def open_owner(spool_fd: int, name: str) -> int:
    """Open an owner directory of the spool without following a symlink.

    Raises:
        Unsafe: It fails :func:`owner_problem`.
        OSError: It cannot be opened (ELOOP for a symlink).
    """
    fd = os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=spool_fd)
    problem = owner_problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise Unsafe(name, problem)
    return fd


def open_file(dir_fd: int, name: str, flags: int, *, verify: bool = True) -> int:
    """Open ``name`` in ``dir_fd`` with ``O_NOFOLLOW``; with ``verify``, only a regular file
    owned by our uid with one link (``O_TRUNC`` is refused: truncate after verifying).

    Raises:
        Unsafe: ``verify`` and it is not such a file.
        OSError: It cannot be opened (ELOOP for a symlink).
    """
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    if verify:
        status = os.fstat(fd)
        if (
            not stat.S_ISREG(status.st_mode)
            or status.st_uid != os.geteuid()
            or status.st_nlink != 1
        ):
            os.close(fd)
            raise Unsafe(name, "it is not a regular file of ours")
    return fd


def unlink_file(dir_fd: int, name: str) -> bool:
    """Remove ``name`` if it is a regular file we own; True when it is gone."""
    try:
        status = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def list_entries(dir_fd: int) -> Iterator[os.DirEntry[str]]:
    """The entries of a directory open as ``dir_fd``, through a descriptor of its own
    (a shared one would share its read position with another scan). An entry's ``stat()``
    works only while the iteration is under way.

    Raises:
        OSError: It cannot be listed.
    """
    fd = os.open(".", _DIRECTORY, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            yield from entries
    finally:
        os.close(fd)


def remove_owner(spool_fd: int, name: str, owner_fd: int) -> bool:
    """Remove a settled owner directory: its regular files, the lock last, then itself.

    Returns:
        True when it is gone; False when something in it is not ours to remove.
    """
    clean = True
    with contextlib.suppress(OSError):
        for entry in list(list_entries(owner_fd)):
            if entry.name != LOCK_NAME:
                clean = unlink_file(owner_fd, entry.name) and clean
    if not clean:
        return False
    unlink_file(owner_fd, LOCK_NAME)
    try:
        os.rmdir(name, dir_fd=spool_fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def read_meta(owner_fd: int) -> dict[str, object]:
    """An owner's ``meta.json``, or ``{}`` when it cannot be read or is not ours."""
    try:
        fd = open_file(owner_fd, META_NAME, os.O_RDONLY)
    except OSError:
        return {}
    try:
        meta = json.loads(os.read(fd, 64 * 1024).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return meta if isinstance(meta, dict) else {}


def append_file(dir_fd: int, name: str, data: bytes, *, verify: bool) -> int:
    """Append ``data`` to ``name`` in ``dir_fd`` (created ``0600``) in one write.

    Returns:
        The bytes written.

    Raises:
        OSError: It cannot be opened or written (``Unsafe`` with ``verify``, see
            :func:`open_file`).
    """
    fd = open_file(dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, verify=verify)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def make_owner(spool_fd: int, name: str, meta: bytes) -> tuple[int, int]:
    """Build an owner directory under a ``.new-`` name, lock it, write its ``meta.json``
    and rename it into place, so that no observer sees an owner before it is locked.

    Returns:
        The owner directory's descriptor and its lock's, locked.

    Raises:
        OSError: It cannot be made (nothing is left behind).
    """
    building = f"{NEW_PREFIX}{name}"
    os.mkdir(building, 0o700, dir_fd=spool_fd)
    owner_fd = lock_fd = -1
    try:
        owner_fd = open_owner(spool_fd, building)
        lock_fd = open_file(owner_fd, LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        append_file(owner_fd, META_NAME, meta, verify=False)
        os.rename(building, name, src_dir_fd=spool_fd, dst_dir_fd=spool_fd)
    except OSError:
        if lock_fd >= 0:
            os.close(lock_fd)
        if owner_fd >= 0:
            remove_owner(spool_fd, building, owner_fd)
            os.close(owner_fd)
        else:
            with contextlib.suppress(OSError):
                os.rmdir(building, dir_fd=spool_fd)
        raise
    return owner_fd, lock_fd


def others_bytes(spool_fd: int, own: str | None) -> int:
    """Bytes of the regular files in this uid's owner directories other than ``own``
    (another user's files do not use up our room)."""
    total = 0
    uid = os.geteuid()
    with contextlib.suppress(OSError):
        for entry in list_entries(spool_fd):
            if entry.name == own or not entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    total += _bytes_in(spool_fd, entry.name)
    return total


def _bytes_in(spool_fd: int, name: str) -> int:
    total = 0
    fd = os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=spool_fd)
    try:
        for entry in list_entries(fd):
            with contextlib.suppress(OSError):
                status = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(status.st_mode):
                    total += status.st_size
    finally:
        os.close(fd)
    return total
