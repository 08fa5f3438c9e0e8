"""The spool's file operations follow no symlink and remove only regular files of ours."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from tests.test_handler_spool import now_ms
from watchtower_refresh._spool import Spool, adopt, layout

GROUP = "app"


def dead_owner(directory: Path, records: int = 3) -> Path:
    spool = Spool.open(directory, GROUP)
    assert spool is not None
    for n in range(records):
        spool.append("s", now_ms(), f"record {n}")
    owner = spool.owner_directory
    assert owner is not None
    spool.close()
    return owner


def test_symlinks_in_our_own_owner_directories_are_never_followed(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("not the spool's")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("kept")
    owner = dead_owner(spool_dir)
    (owner / "adopter").symlink_to(outside)  # opened with O_TRUNC before: truncated
    (owner / f"{1 << 30:016x}.seg").symlink_to(outside)  # named like a segment
    unfinished = spool_dir / ".new-gxx"
    unfinished.symlink_to(elsewhere)
    old = time.time() - 3600
    os.utime(unfinished, (old, old), follow_symlinks=False)
    with adopt(spool_dir, GROUP) as adoption:
        found: list[str] = []
        for batch in adoption:
            found.extend(r.message for r in batch.records)
            batch.ack()
    assert found == [f"record {n}" for n in range(3)]
    assert outside.read_text() == "not the spool's"
    assert (elsewhere / "kept").read_text() == "kept"
    assert owner.is_dir()  # it holds symlinks that are not ours to remove: kept
    assert (owner / "adopter").is_symlink()


def test_only_regular_files_of_ours_with_one_link_are_opened_or_removed(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    os.link(tmp_path / "file", tmp_path / "linked")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(layout.Unsafe, match="regular file of ours"):
            layout.open_file(fd, "linked", os.O_RDONLY)  # a second name: maybe not ours
        with pytest.raises(OSError, match="symbolic links") as caught:
            layout.open_file(fd, "link", os.O_RDONLY)
        assert caught.value.errno == errno.ELOOP
        assert not layout.unlink_file(fd, "dir")
        assert not layout.unlink_file(fd, "link")
        assert layout.unlink_file(fd, "missing")
        assert layout.unlink_file(fd, "linked")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file", "link"]
        (tmp_path / "dir" / "sub").mkdir()
        (tmp_path / "dir" / "owner.lock").touch()
        dir_fd = os.open(tmp_path / "dir", os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert not layout.remove_owner(fd, "dir", dir_fd)  # it holds a directory: kept
        finally:
            os.close(dir_fd)
        assert (tmp_path / "dir" / "owner.lock").exists()  # the lock goes last, if at all
    finally:
        os.close(fd)


def test_warnings_about_refused_directories_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "_WARNED", set())
    said: list[str] = []
    for n in range(30):
        layout.warn_once(f"dir{n}", "a problem", said.append, f"dir{n} refused")
        layout.warn_once(f"dir{n}", "a problem", said.append, f"dir{n} again")
    assert said[:20] == [f"dir{n} refused" for n in range(20)]
    assert said[20:] == ["more spool directories cannot be used; they are not reported one by one"]


def test_a_spool_path_that_is_a_file_or_a_symlink_to_a_safe_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.warns(match="is not a directory"):
        assert Spool.open(tmp_path / "file", GROUP) is None
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)  # the configured path is the operator's to choose
    spool = Spool.open(tmp_path / "via", GROUP)
    assert spool is not None
    spool.append("s", now_ms(), "kept")
    spool.close()
    assert len(list(real.iterdir())) == 1
