"""The spool directory as a trust boundary: what another local user plants is never
delivered, followed, truncated or deleted."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import logger_for
from tests.test_handler_spool import now_ms
from watchtower_refresh import WatchtowerRefreshWarning
from watchtower_refresh._spool import Spool, adopt, describe
from watchtower_refresh._spool.layout import group_key
from watchtower_refresh.testing import FakeAWS

Read = Any
GROUP = "/spool/trusted"
NOBODY = 65534

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="a second uid can be made only when the tests run as root"
)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory tree another uid can reach (pytest's tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="wtr-trust-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(work: Any) -> None:
    """Run ``work`` in a forked child as uid/gid 65534; fail if it fails."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which coverage does not save
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@needs_root
def test_a_hostile_user_forges_nothing_and_touches_nothing_outside_the_spool(
    aws: FakeAWS, make_handler: Any, messages: Read, shared: Path
) -> None:
    spool_dir = shared / "spool"
    spool_dir.mkdir()
    spool_dir.chmod(0o1777)  # like /tmp: root's, sticky, everybody may write
    secret = shared / "secret"
    secret.write_text("root's own data")
    secret.chmod(0o600)
    private = shared / "private"
    private.mkdir(mode=0o700)
    for n in range(3):
        (private / f"file{n}").write_text(f"kept {n}")
    forged_name = f"g{group_key(GROUP)}-p1-t{now_ms() - 10_000}-0bad"
    old = time.time() - 3600

    def plant() -> None:  # pragma: no cover - runs in the child
        # a dead owner made by the spool's own writer, run as the other user
        forger = Spool.open(spool_dir, GROUP)
        assert forger is not None
        for n in range(6):
            forger.append("forged-stream", now_ms(), f"forged {n}")
        owner = forger.owner_directory
        assert owner is not None
        os.symlink(secret, owner / "adopter")  # a truncation through a symlink
        os.symlink(secret, owner / f"{1 << 20:016x}.seg")  # and a deletion
        os.rename(owner, spool_dir / forged_name)
        # an owner's name that is a symlink to a directory, and an unfinished one
        os.symlink(private, spool_dir / f"g{group_key(GROUP)}-p2-t1-0bad")
        unfinished = spool_dir / ".new-g0bad"
        os.symlink(private, unfinished)
        os.utime(unfinished, (old, old), follow_symlinks=False)
        forged = spool_dir / f"g{group_key(GROUP)}-p3-t2-0bad"
        forged.mkdir(mode=0o700)
        (forged / "owner.lock").touch()
        (forged / "meta.json").write_text(json.dumps({"version": 1, "group": GROUP}))

    as_nobody(plant)
    handler = make_handler(GROUP, spool_dir=str(spool_dir))
    logger = logger_for(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(10):
            logger.info("real %d", n)
        assert handler.flush(timeout=20)
        handler.close()
    assert sorted(messages(GROUP)) == sorted(f"real {n}" for n in range(10))
    assert secret.read_text() == "root's own data"
    assert sorted(p.name for p in private.iterdir()) == ["file0", "file1", "file2"]
    assert (spool_dir / forged_name).is_dir()  # not ours to remove
    refused = [str(w.message) for w in caught if "not adopted" in str(w.message)]
    assert any(forged_name in text and f"uid {NOBODY}" in text for text in refused)
    states = {Path(s.directory).name: s.state for s in describe(spool_dir)}
    assert states[forged_name] == "unsafe"


@needs_root
def test_a_spool_directory_owned_by_another_user_is_refused(
    aws: FakeAWS, make_handler: Any, messages: Read, shared: Path
) -> None:
    spool_dir = shared / "theirs"
    spool_dir.mkdir(mode=0o700)
    os.chown(spool_dir, NOBODY, NOBODY)
    handler = make_handler(GROUP, spool_dir=str(spool_dir))
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="not safe to use") as caught:
        for n in range(5):
            logger.info("memory %d", n)
        assert handler.flush(timeout=10)
    assert len([w for w in caught if "spool" in str(w.message)]) == 1
    assert f"owned by uid {NOBODY}" in str(caught[0].message)
    assert sorted(messages(GROUP)) == sorted(f"memory {n}" for n in range(5))
    assert list(spool_dir.iterdir()) == []


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_a_spool_directory_others_may_write_without_the_sticky_bit_is_refused(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path, mode: int
) -> None:
    spool_dir = tmp_path / "open"
    spool_dir.mkdir()
    spool_dir.chmod(mode)
    handler = make_handler(GROUP, spool_dir=str(spool_dir))
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="not safe to use") as caught:
        for n in range(5):
            logger.info("memory %d", n)
        assert handler.flush(timeout=10)
    assert len([w for w in caught if "spool" in str(w.message)]) == 1
    assert "no sticky bit" in str(caught[0].message)
    assert sorted(messages(GROUP)) == sorted(f"memory {n}" for n in range(5))
    assert handler.stats.delivered == 5
    assert list(spool_dir.iterdir()) == []
    with pytest.raises(OSError, match="sticky"):
        describe(spool_dir)


def test_a_sticky_shared_directory_is_used(tmp_path: Path) -> None:
    spool_dir = tmp_path / "sticky"
    spool_dir.mkdir()
    spool_dir.chmod(0o1777)
    spool = Spool.open(spool_dir, GROUP)
    assert spool is not None
    assert spool.append("s", now_ms(), "kept") == 1
    spool.close()
    with adopt(spool_dir, GROUP) as adoption:
        assert [r.message for batch in adoption for r in batch.records] == ["kept"]


def test_owner_directories_others_may_write_to_are_not_adopted(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path, GROUP)
    assert spool is not None
    spool.append("s", now_ms(), "waits")
    owner = spool.owner_directory
    assert owner is not None
    spool.close()
    owner.chmod(0o777)
    with (
        pytest.warns(WatchtowerRefreshWarning, match="group or others may write") as caught,
        adopt(tmp_path, GROUP) as adoption,
    ):
        assert list(adoption) == []
    assert str(owner) in str(caught[0].message)
    owner.chmod(0o700)  # made safe again: adopted
    with adopt(tmp_path, GROUP) as adoption:
        assert [r.message for batch in adoption for r in batch.records] == ["waits"]


def test_an_owner_written_on_another_host_without_its_lock_waits_with_a_warning(
    tmp_path: Path,
) -> None:
    spool = Spool.open(tmp_path, GROUP)
    assert spool is not None
    spool.append("s", now_ms(), "waits")
    owner = spool.owner_directory
    assert owner is not None
    spool.close()
    (owner / "owner.lock").unlink()
    meta = json.loads((owner / "meta.json").read_text())
    meta["host"] = socket.gethostname() + "-elsewhere"
    (owner / "meta.json").write_text(json.dumps(meta))
    with (
        pytest.warns(WatchtowerRefreshWarning, match="written on host") as caught,
        adopt(tmp_path, GROUP) as adoption,
    ):
        assert list(adoption) == []
    assert str(owner) in str(caught[0].message)
    assert [s.records for s in describe(tmp_path)] == [1]
