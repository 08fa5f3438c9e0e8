"""The disk spool on its own: crash recovery with real processes, damage, limits, forks."""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import random
import select
import signal
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from watchtower_refresh import WatchtowerRefreshWarning
from watchtower_refresh._exceptions import ConfigurationError
from watchtower_refresh._spool import (
    Spool,
    SpooledRecord,
    adopt,
    current,
    describe,
    failures,
    forks,
)
from watchtower_refresh._spool import format as spool_format
from watchtower_refresh._spool import owner as owner_module
from watchtower_refresh._spool.adoption import _Claim
from watchtower_refresh._spool.layout import others_bytes

GROUP = "app"


def open_spool(directory: Path, group: str = GROUP, **options: Any) -> Spool:
    spool = Spool.open(directory, group, **options)
    assert spool is not None
    return spool


def replay(
    directory: Path, group: str = GROUP, *, ack: bool = True
) -> tuple[list[SpooledRecord], Any]:
    """Adopt every dead owner of ``group``; return the records and the adoption's stats."""
    found: list[SpooledRecord] = []
    with adopt(directory, group, batch_records=100) as adoption:
        for batch in adoption:
            found.extend(batch.records)
            if ack:
                batch.ack()
    return found, adoption.stats


def message(n: int, size: int) -> str:
    """A message whose content says which record it is, checkable after recovery."""
    head = f"{n}:{size}:"
    return head + "abcdefghij" * (size // 10)


def owners(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("g"))


def in_child(work: Callable[[], None]) -> int:
    """Fork; run ``work`` in the child, which then ends with os._exit. Return the pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which coverage does not save
        code = 0
        try:
            work()
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# ----------------------------------------------------------------------------- round trip


def test_records_come_back_with_their_stream_timestamp_and_text(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    texts = ["plain", "ünïcödé ✓ 日本", "lone surrogate \udc80 kept", "", "x" * 100_000]
    ids = [spool.append(f"stream-{n}", 1_700_000_000_000 + n, t) for n, t in enumerate(texts)]
    assert ids == [1, 2, 3, 4, 5]
    assert None not in ids
    spool.close()  # nothing acknowledged: the directory stays for an adopter
    found, stats = replay(tmp_path)
    assert found == [
        SpooledRecord(n + 1, 1_700_000_000_000 + n, f"stream-{n}", t) for n, t in enumerate(texts)
    ]
    assert stats.adopted == 5
    assert stats.corrupt == 0
    assert list(tmp_path.iterdir()) == []  # all acknowledged: nothing left


def test_acknowledged_records_are_not_replayed_and_settled_segments_are_deleted(
    tmp_path: Path,
) -> None:
    spool = open_spool(tmp_path, segment_bytes=4096)
    ids = [spool.append("s", n, message(n, 200)) for n in range(200)]
    assert all(i is not None for i in ids)
    owner = spool.owner_directory
    assert owner is not None
    segments = len(list(owner.glob("*.seg")))
    assert segments > 5
    settled = [i for i in ids if i is not None and i % 3 != 0]
    random.Random(1).shuffle(settled)  # acks arrive in any order
    for start in range(0, len(settled), 17):
        spool.ack(settled[start : start + 17])
    spool.ack(settled[:5])  # acknowledged twice: ignored
    spool.ack([0, 10_000])  # unknown ids: ignored
    assert spool.stats.acked == len(settled)
    spool.close()
    found, stats = replay(tmp_path)
    assert [r.id for r in found] == [i for i in ids if i is not None and i % 3 == 0]
    assert stats.corrupt == 0


def test_a_spool_closed_with_everything_acknowledged_leaves_nothing(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=4096)
    ids = [spool.append("s", n, message(n, 500)) for n in range(50)]
    spool.ack(i for i in ids if i is not None)
    spool.ack([1])  # its segment is gone already: ignored
    spool.close()
    spool.close()
    assert list(tmp_path.iterdir()) == []
    assert spool.append("s", 1, "after close") is None


def test_dead_owners_replay_oldest_first_and_other_groups_are_left_alone(tmp_path: Path) -> None:
    for n in range(3):
        spool = open_spool(tmp_path)
        spool.append("s", n, f"owner {n}")
        spool.close()
        time.sleep(0.002)  # owner directories are ordered by creation time in ms
    other = open_spool(tmp_path, "other-group")
    other.append("s", 9, "not mine")
    other.close()
    found, stats = replay(tmp_path)
    assert [r.message for r in found] == ["owner 0", "owner 1", "owner 2"]
    assert stats.owners_adopted == 3
    assert [r.message for r in replay(tmp_path, "other-group")[0]] == ["not mine"]


def test_a_recycled_pid_does_not_keep_a_dead_owner_alive(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("s", 1, "left by a process whose pid now belongs to another")
    spool.close()
    [owner] = owners(tmp_path)
    assert f"-p{os.getpid()}-" in owner.name  # a live process has that pid: this one
    assert [s.state for s in describe(tmp_path)] == ["dead"]  # the lock says otherwise
    assert len(replay(tmp_path)[0]) == 1


def test_a_live_writer_is_never_adopted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("s", 1, "mine")
    assert replay(tmp_path)[0] == []
    assert list(spool.adopt()) == []
    [summary] = describe(tmp_path)
    assert summary.state == "alive"
    assert summary.records == 1
    spool.close()
    assert [r.message for r in replay(tmp_path)[0]] == ["mine"]


def test_batches_respect_their_limits_and_partial_acks(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    for n in range(25):
        spool.append("s", n, "m" * 100)
    spool.close()
    with adopt(tmp_path, GROUP, batch_records=10, batch_bytes=450) as adoption:
        batches = list(adoption)
        assert [len(b.records) for b in batches] == [4, 4, 4, 4, 4, 4, 1]
        for batch in batches:
            batch.ack([batch.records[0].id])  # only the first of each
    found, _ = replay(tmp_path)
    assert len(found) == 25 - 7


def test_options_are_validated(tmp_path: Path) -> None:
    for options in (
        {"segment_bytes": 100},
        {"max_bytes": 5000, "segment_bytes": 8192},
        {"max_bytes": 1.5},
        {"segment_bytes": True},
    ):
        with pytest.raises(ConfigurationError):
            Spool.open(tmp_path, GROUP, **options)
    with pytest.raises(ConfigurationError, match="group"):
        Spool.open(tmp_path, "")
    with pytest.raises(ConfigurationError, match="batch"):
        adopt(tmp_path, GROUP, batch_records=0)


# ----------------------------------------------------------------------------- SIGKILL


def _write_until_killed(directory: Path, report: int, seed: int) -> None:  # pragma: no cover
    """In a child: append, then report each id whose append returned; ack some."""
    rng = random.Random(seed)
    spool = open_spool(directory, segment_bytes=64 * 1024)
    done: list[int] = []
    # Every fourth run writes only large records, so the kill lands inside a write.
    large = 1 if seed % 4 == 3 else 1 / 16
    for n in range(1_000_000):
        size = 1_000_000 if rng.random() < large else rng.choice((0, 40, 400))
        record_id = spool.append(f"stream-{n % 3}", 1_000 + n, message(n, size))
        if record_id is None:
            raise RuntimeError("append refused")
        os.write(report, struct.pack("<cQQ", b"A", n, record_id))
        done.append(record_id)
        if len(done) == 40:  # the first half is settled; the rest stay pending
            for settling in done[:20]:
                os.write(report, struct.pack("<cQQ", b"S", 0, settling))
            spool.ack(done[:20])
            for acked in done[:20]:
                os.write(report, struct.pack("<cQQ", b"K", 0, acked))
            done.clear()


@pytest.mark.parametrize("seed", range(20))
def test_sigkill_at_a_random_instant_loses_no_returned_record(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    read_end, write_end = os.pipe()
    pid = in_child(lambda: _write_until_killed(tmp_path, write_end, seed))
    os.close(write_end)
    data = bytearray()
    while not data:  # the child is writing: from now on, a kill at a random instant
        data += os.read(read_end, 1 << 16)
    deadline = time.monotonic() + rng.uniform(0.0, 0.25)
    while time.monotonic() < deadline:  # keep the pipe drained so the child never blocks
        if select.select([read_end], [], [], 0.005)[0]:
            data += os.read(read_end, 1 << 16)
    os.kill(pid, signal.SIGKILL)
    assert exit_code(pid) == -signal.SIGKILL
    while chunk := os.read(read_end, 1 << 16):
        data += chunk
    os.close(read_end)

    size = struct.calcsize("<cQQ")
    appended: dict[int, int] = {}
    settling: set[int] = set()  # ack() was called: back or not, as the kill fell
    acked: set[int] = set()  # ack() returned: never back
    for start in range(0, len(data) - len(data) % size, size):
        kind, n, record_id = struct.unpack_from("<cQQ", data, start)
        if kind == b"A":
            appended[record_id] = n
        elif kind == b"S":
            settling.add(record_id)
        else:
            acked.add(record_id)
    assert appended

    found, stats = replay(tmp_path)
    ids = [r.id for r in found]
    assert len(ids) == len(set(ids))  # each record once
    for record in found:  # nothing damaged passes for a record
        n = int(record.message.split(":")[0])
        assert record.message == message(n, int(record.message.split(":")[1]))
        assert (record.timestamp_ms, record.stream) == (1_000 + n, f"stream-{n % 3}")
    last = max(appended)
    expected = set(appended) - settling
    assert expected <= set(ids)  # every returned, unacknowledged record is back
    assert set(ids) - expected <= (settling - acked) | {last + 1}  # and the one in flight
    assert not acked & set(ids)
    assert stats.corrupt <= 1  # at most the record torn by the kill
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- adopters


def _dead_owners(directory: Path, owners_: int, records: int) -> set[tuple[str, int]]:
    """Owners whose writer is gone, each with ``records`` records in several segments."""
    expected = set()
    for _ in range(owners_):
        spool = open_spool(directory, segment_bytes=8192)
        for n in range(records):
            record_id = spool.append("s", n, message(n, 100))
            assert record_id is not None
            assert spool.owner_directory is not None
            expected.add((spool.owner_directory.name, record_id))
        spool.close()
    return expected


def _adopt_into(directory: Path, report: Path, go: int) -> None:  # pragma: no cover
    os.read(go, 1)
    rng = random.Random(os.getpid())
    with report.open("w") as out, adopt(directory, GROUP, batch_records=50) as adoption:
        for batch in adoption:
            out.writelines(f"{batch.owner.name} {r.id}\n" for r in batch.records)
            out.flush()
            time.sleep(rng.uniform(0, 0.002))
            batch.ack()


def test_two_live_adopters_racing_adopt_each_record_once(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    expected = _dead_owners(spool_dir, owners_=8, records=150)
    go_read, go_write = os.pipe()
    reports = [tmp_path / "a.txt", tmp_path / "b.txt"]
    pids = [in_child(functools.partial(_adopt_into, spool_dir, r, go_read)) for r in reports]
    os.write(go_write, b"go")
    assert [exit_code(pid) for pid in pids] == [0, 0]
    seen = [
        {(line.split()[0], int(line.split()[1])) for line in r.read_text().splitlines()}
        for r in reports
    ]
    lines = sum(len(r.read_text().splitlines()) for r in reports)
    assert seen[0] | seen[1] == expected
    assert not seen[0] & seen[1]
    assert lines == len(expected)  # no record yielded twice, even within one adopter
    assert list(spool_dir.iterdir()) == []


def _adopt_then_die(directory: Path, report: Path) -> None:  # pragma: no cover
    with report.open("w") as out:
        adoption = adopt(directory, GROUP, batch_records=50)
        batches = iter(adoption)
        for _ in range(3):
            batch = next(batches)
            batch.ack()
            out.writelines(f"{r.id}\n" for r in batch.records)
        next(batches)  # taken, never acknowledged
    os.kill(os.getpid(), signal.SIGKILL)


def test_an_adopter_killed_mid_replay_leaves_the_rest_to_the_next(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    expected = {i for _, i in _dead_owners(spool_dir, owners_=1, records=400)}
    report = tmp_path / "acked.txt"
    assert exit_code(in_child(lambda: _adopt_then_die(spool_dir, report))) == -signal.SIGKILL
    acked = {int(line) for line in report.read_text().split()}
    assert len(acked) >= 100  # three batches
    [summary] = describe(spool_dir)
    assert summary.state == "dead"
    found, stats = replay(spool_dir)
    assert {r.id for r in found} == expected - acked
    assert len(found) == len(expected - acked)
    assert stats.corrupt == 0


def test_a_lock_file_replaced_under_an_adopter_is_not_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dead_owners(tmp_path, owners_=1, records=5)
    [owner] = owners(tmp_path)
    real_flock = fcntl.flock

    def flock_after_a_finished_adopter(fd: int, operation: int) -> None:
        # as if another adopter settled the owner and a new lock file took the name
        (owner / "owner.lock").unlink()
        (owner / "owner.lock").touch()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_finished_adopter)
    with adopt(tmp_path, GROUP) as adoption:
        assert list(adoption) == []
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert len(replay(tmp_path)[0]) == 5


def test_describe_shows_an_owner_being_replayed(tmp_path: Path) -> None:
    _dead_owners(tmp_path, owners_=1, records=10)
    with adopt(tmp_path, GROUP) as adoption:
        [batch] = list(adoption)
        [summary] = describe(tmp_path)
        assert (summary.state, summary.adopter_pid) == ("replaying", os.getpid())
        assert replay(tmp_path)[0] == []  # claimed: a second adopter gets nothing
        batch.ack(r.id for r in batch.records[:4])
    batch.ack()  # after the release: changes nothing
    # released unfinished: the other six wait for the next adopter
    assert len(replay(tmp_path)[0]) == 6


# ----------------------------------------------------------------------------- damage


def _one_segment(directory: Path, records: int = 20) -> Path:
    spool = open_spool(directory)
    for n in range(records):
        spool.append("s", n, message(n, 60))
    spool.close()
    [owner] = owners(directory)
    [segment] = owner.glob("*.seg")
    return segment


def _offsets(data: bytes) -> list[int]:
    """Where each record's frame begins in an undamaged segment."""
    starts, position = [], spool_format.FILE_HEADER.size
    while position < len(data):
        starts.append(position)
        _, length, _ = spool_format.FRAME.unpack_from(data, position)
        position += spool_format.FRAME.size + length
    return starts


def _flip(index: int) -> Callable[[bytearray, list[int]], None]:
    def damage(data: bytearray, starts: list[int]) -> None:
        data[starts[index] + 30] ^= 0x55

    return damage


def _zero_records(data: bytearray, starts: list[int]) -> None:
    data[starts[5] : starts[8]] = bytes(starts[8] - starts[5])


def _truncate_mid_record(data: bytearray, starts: list[int]) -> None:
    del data[starts[15] + 7 :]


def _garbage_after(data: bytearray, starts: list[int]) -> None:
    data += b"\xd7\x1c not a frame \xd7\x1c\xff\xff\xff\xff"


def _stray_edit(data: bytearray, starts: list[int]) -> None:
    at = data.index(b"7:60:abc")
    data[at : at + 8] = b"7:60:ABC"


def _inserted_between(data: bytearray, starts: list[int]) -> None:
    data[starts[10] : starts[10]] = b"an editor's stray line\n"


def _header_damaged(data: bytearray, starts: list[int]) -> None:
    data[0:4] = b"junk"


def _huge_length(data: bytearray, starts: list[int]) -> None:
    struct.pack_into("<I", data, starts[3] + 2, 0xFFFFFFF0)


def _valid_frames_bad_records(data: bytearray, starts: list[int]) -> None:
    # frames whose checksum holds but whose record does not: too short, and a stream name
    # longer than the payload
    for payload in (b"short", spool_format.RECORD.pack(21, 0, 500) + b"x"):
        data += (
            spool_format.FRAME.pack(spool_format.SYNC, len(payload), zlib.crc32(payload)) + payload
        )


@pytest.mark.parametrize(
    ("damage", "lost", "corrupt"),
    [
        (_flip(0), {0}, 1),
        (_flip(12), {12}, 1),
        (_flip(19), {19}, 1),
        (_zero_records, {5, 6, 7}, 3),
        # the tail file says how many records the writer appended: a cut at the end
        # counts each, and bytes after the last record that are none count nothing
        (_truncate_mid_record, set(range(15, 20)), 5),
        (_garbage_after, set(), 0),
        (_stray_edit, {7}, 1),
        (_inserted_between, set(), 0),
        (_header_damaged, set(), 0),
        (_huge_length, {3}, 1),
        (_valid_frames_bad_records, set(), 0),
    ],
)
def test_damage_costs_only_the_records_it_touches(
    tmp_path: Path,
    damage: Callable[[bytearray, list[int]], None],
    lost: set[int],
    corrupt: int,
) -> None:
    segment = _one_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    damage(data, _offsets(bytes(data)))
    segment.write_bytes(bytes(data))
    [summary] = describe(tmp_path)
    assert (summary.records, summary.corrupt) == (20 - len(lost), corrupt)
    found, stats = replay(tmp_path)
    assert [r.timestamp_ms for r in found] == [n for n in range(20) if n not in lost]
    assert all(r.message == message(r.timestamp_ms, 60) for r in found)
    assert stats.corrupt == corrupt
    assert list(tmp_path.iterdir()) == []


def _not_a_tail(owner: Path) -> None:
    good = (owner / "tail").read_bytes()
    (owner / "tail").write_bytes(spool_format.ACKS_HEADER + good[12:])  # another kind


def _short_tail(owner: Path) -> None:
    (owner / "tail").write_bytes((owner / "tail").read_bytes()[:20])


def _tail_symlink(owner: Path) -> None:
    (owner / "elsewhere").write_bytes((owner / "tail").read_bytes())
    (owner / "tail").unlink()
    (owner / "tail").symlink_to(owner / "elsewhere")


def _index_damaged(owner: Path) -> None:
    # without the index, the last segment file may not be the writer's last segment
    (owner / "index").write_bytes(b"not an index")


def _tail_bad_segment_bytes(owner: Path) -> None:
    # a meta.json that says nothing usable: the writer's default bounds it, still believed
    meta = json.loads((owner / "meta.json").read_text())
    meta["segment_bytes"] = True
    (owner / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "corrupt"),
    [
        (_not_a_tail, 1),
        (_short_tail, 1),
        (_tail_symlink, 1),
        (_index_damaged, 1),
        (_tail_bad_segment_bytes, 5),
    ],
)
def test_a_tail_file_that_cannot_be_believed_counts_as_before(
    tmp_path: Path, damage: Callable[[Path], None], corrupt: int
) -> None:
    segment = _one_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    _truncate_mid_record(data, _offsets(bytes(data)))  # records 15 to 19 are gone
    segment.write_bytes(bytes(data))
    damage(segment.parent)
    [summary] = describe(tmp_path)
    assert (summary.records, summary.corrupt) == (15, corrupt)
    found, stats = replay(tmp_path)
    assert [r.timestamp_ms for r in found] == list(range(15))
    assert stats.corrupt == corrupt
    # a symlink is never removed (nor followed): the rest is
    left = sorted(p.name for p in tmp_path.glob("*/*"))
    assert left == (["owner.lock", "tail"] if damage is _tail_symlink else [])


def test_random_byte_damage_never_yields_a_wrong_record(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(100):
        directory = tmp_path / str(trial)
        directory.mkdir()
        segment = _one_segment(directory, records=30)
        data = bytearray(segment.read_bytes())
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        segment.write_bytes(bytes(data))
        found, stats = replay(directory)
        assert all(r.message == message(r.timestamp_ms, 60) for r in found)
        assert len({r.id for r in found}) == len(found)
        lost = 30 - len(found)
        # exact where later records survive; one for a run of damage at the end
        assert (lost == 0 and stats.corrupt == 0) or 1 <= stats.corrupt <= lost


def test_a_renamed_segment_is_counted_corrupt_not_misread(tmp_path: Path) -> None:
    segment = _one_segment(tmp_path)
    segment.rename(segment.with_name(f"{1 << 40:016x}.seg"))  # ids no longer fit its name
    found, stats = replay(tmp_path)
    assert (found, stats.corrupt) == ([], 20)


def test_what_cannot_be_read_is_kept_and_the_rest_replayed(tmp_path: Path) -> None:
    segment = _one_segment(tmp_path)
    unreadable = segment.with_name(f"{1000:016x}.seg")
    unreadable.mkdir()  # a name a segment would have, that cannot be read as one
    assert describe(tmp_path)[0].records == 20
    found, _ = replay(tmp_path)
    assert len(found) == 20
    assert unreadable.is_dir()  # its owner directory stays for a later look
    assert replay(tmp_path)[0] == []


def test_directories_that_are_not_owners_are_ignored(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("s", 1, "real")
    spool.close()
    [owner] = owners(tmp_path)
    impostor = tmp_path / owner.name.replace("-p", "-p9")
    impostor.mkdir()  # an owner's name, but no lock file
    (tmp_path / "notes.txt").write_text("an operator's file")
    same_hash = tmp_path / (owner.name[:-2] + "ff")
    same_hash.mkdir()
    (same_hash / "owner.lock").touch()  # same group hash, another group in its metadata
    (same_hash / "meta.json").write_text(json.dumps({"version": 1, "group": "not app"}))
    assert {s.state for s in describe(tmp_path)} == {"dead"}
    assert [r.message for r in replay(tmp_path)[0]] == ["real"]
    assert impostor.is_dir()
    assert same_hash.is_dir()
    assert replay(tmp_path / "missing")[0] == []


def test_files_of_a_newer_format_are_left_untouched(tmp_path: Path) -> None:
    segment = _one_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    struct.pack_into("<H", data, 8, spool_format.FORMAT_VERSION + 1)
    segment.write_bytes(bytes(data))
    found, stats = replay(tmp_path)
    assert found == []
    assert stats.newer_files == 1
    assert segment.read_bytes() == data  # kept for the version that wrote it
    assert describe(tmp_path)[0].newer_files == 1

    meta = segment.parent / "meta.json"
    meta.write_text(json.dumps({"version": spool_format.FORMAT_VERSION + 1, "group": GROUP}))
    found, stats = replay(tmp_path)
    assert (found, stats.owners_adopted, stats.newer_files) == ([], 0, 1)


def test_a_damaged_ack_file_brings_records_back_rather_than_losing_them(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    ids = [spool.append("s", n, f"m{n}") for n in range(10)]
    spool.ack(i for i in ids[:6] if i is not None)
    spool.close()
    [owner] = owners(tmp_path)
    [acks] = owner.glob("*.ack")
    acks.write_bytes(acks.read_bytes()[:-3])  # the ack write was torn
    (owner / "meta.json").write_text("{not json")  # and a stray edit of the metadata
    found, stats = replay(tmp_path)
    assert [r.message for r in found] == [f"m{n}" for n in range(10)]
    assert stats.corrupt == 0


def test_leftovers_of_interrupted_work_are_cleaned(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append("s", 1, "kept")
    spool.close()
    [owner] = owners(tmp_path)
    (owner / "00000000000000ff.ack").write_bytes(b"an ack file whose segment is gone")
    unfinished = tmp_path / ".new-gxxxx"
    unfinished.mkdir()
    (unfinished / "owner.lock").touch()
    old = time.time() - 3600
    os.utime(unfinished, (old, old))
    assert [r.message for r in replay(tmp_path)[0]] == ["kept"]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- limits and I/O


def test_a_full_spool_refuses_then_accepts_once_records_are_acknowledged(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=64 * 1024, segment_bytes=8192)
    ids: list[int] = []
    while (record_id := spool.append("s", len(ids), "m" * 1000)) is not None:
        ids.append(record_id)
    assert spool.stats.full == 1
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert 60 * 1024 < on_disk <= 64 * 1024
    assert len(ids) > 55

    # a second writer in the same directory sees the first one's bytes
    second = open_spool(tmp_path, max_bytes=64 * 1024, segment_bytes=8192)
    assert second.append("s", 0, "m" * 1000) is None
    assert second.stats.full == 1
    second.close()

    spool.ack(ids)  # closed segments are deleted: room again
    assert spool.append("s", 0, "after") is not None
    spool.close()
    assert [r.message for r in replay(tmp_path)[0]] == ["after"]


@pytest.mark.parametrize("problem", ["missing", "not a directory", "read-only"])
def test_an_unusable_directory_is_one_warning_and_no_spool(
    tmp_path: Path, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "spool"
    if problem == "not a directory":
        target.write_text("a file")
    elif problem == "read-only":
        target.mkdir()

        def read_only(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.warns(WatchtowerRefreshWarning, match="memory only") as caught:
        assert Spool.open(target, GROUP) is None
    assert len(caught) == 1
    assert str(target) in str(caught[0].message)


def test_a_full_disk_is_counted_warned_once_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failures, "RETRY_SECONDS", 0.0)
    spool = open_spool(tmp_path)
    assert spool.append("s", 0, "before") == 1
    real_write = os.write
    state = {"full": True, "half": False}

    def disk(fd: int, data: Any) -> int:
        if state["half"]:  # the disk fills in the middle of the frame
            state["half"] = False
            return real_write(fd, bytes(data)[: len(data) // 2])
        if state["full"] and len(data) > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk)
    with pytest.warns(WatchtowerRefreshWarning, match="No space left") as caught:
        assert spool.append("s", 1, "lost to a full disk") is None
        assert spool.append("s", 2, "also lost") is None
    assert len(caught) == 1
    state["full"] = False
    assert spool.append("s", 3, "after") is not None
    state["half"] = True
    assert spool.append("s", 4, "torn by a full disk") is None
    assert spool.append("s", 5, "after the tear") is not None
    # a full file system is a full spool (the handler counts spool_full), not an error
    assert (spool.stats.full, spool.stats.errors) == (3, 0)
    spool.close()
    monkeypatch.setattr(os, "write", real_write)
    found, stats = replay(tmp_path)
    assert [r.message for r in found] == ["before", "after", "after the tear"]
    # the torn frame's append returned None (its record stayed in memory): its id was
    # given to the next record, so nothing the spool took was lost
    assert stats.corrupt == 0


def test_an_append_interrupted_by_a_signal_handler_neither_deadlocks_nor_mixes_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A signal handler runs between two bytecodes of the interrupted thread: here, as the
    # frame is written. Its record is kept out of the spool (memory only, counted), and
    # a close() it makes leaves the segment file to the append under way.
    spool = open_spool(tmp_path)
    real_write = os.write
    nested: list[int | None] = []

    def interrupted(fd: int, data: Any) -> int:
        if not nested:
            nested.append(spool.append("s", 2, "logged by the signal handler"))
            spool.close()
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", interrupted)
    assert spool.append("s", 1, "interrupted", b"interrupted") == 1
    monkeypatch.setattr(os, "write", real_write)
    assert nested == [None]
    assert spool.stats.errors == 1
    assert spool.append("s", 3, "after close") is None
    found, _ = replay(tmp_path)
    assert [r.message for r in found] == ["interrupted"]


def test_a_close_during_a_refused_append_still_hands_the_spool_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spool is full; a signal handler closes it while the next append measures the
    # other writers' directories. The refused append finishes the close: the owner's lock is
    # released, and what it wrote is adopted by the next process.
    monkeypatch.setattr(current, "RESCAN_SECONDS", 0.0)
    spool = open_spool(tmp_path, max_bytes=32 * 1024, segment_bytes=8192)
    written = 0
    while spool.append("s", 0, "m" * 1000) is not None:
        written += 1

    def interrupted(spool_fd: int, own: str | None) -> int:
        spool.close()
        return others_bytes(spool_fd, own)

    monkeypatch.setattr(owner_module, "others_bytes", interrupted)
    assert spool.append("s", 0, "m" * 1000) is None
    monkeypatch.setattr(owner_module, "others_bytes", others_bytes)
    found, _ = replay(tmp_path)
    assert len(found) == written > 0


def test_space_freed_by_another_writer_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(current, "RESCAN_SECONDS", 0.0)
    first = open_spool(tmp_path, max_bytes=32 * 1024, segment_bytes=8192)
    ids = []
    while (record_id := first.append("s", 0, "m" * 1000)) is not None:
        ids.append(record_id)
    second = open_spool(tmp_path, max_bytes=32 * 1024, segment_bytes=8192)
    assert second.append("s", 0, "m" * 1000) is None
    first.ack(ids)
    first.close()
    assert second.append("s", 0, "accepted") is not None
    second.close()
    assert [r.message for r in replay(tmp_path)[0]] == ["accepted"]


def test_fsync_and_many_stream_names(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, fsync=True, segment_bytes=8192)
    for n in range(1100):  # more names than the encoded-name cache holds
        spool.append(f"stream-{n}", n, "m")
    spool.close()
    found, _ = replay(tmp_path)
    assert [r.stream for r in found] == [f"stream-{n}" for n in range(1100)]


def test_a_failure_while_building_the_owner_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "rename", no_rename)
    with pytest.warns(WatchtowerRefreshWarning, match="Permission denied"):
        assert Spool.open(tmp_path, GROUP) is None
    assert list(tmp_path.iterdir()) == []


def test_a_segment_that_cannot_be_opened_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failures, "RETRY_SECONDS", 0.0)
    spool = open_spool(tmp_path, segment_bytes=4096)
    real_open, real_write = os.open, os.write
    broken = {"open": False, "header": False}

    def opening(path: Any, *args: Any, **kwargs: Any) -> int:
        if broken["open"] and str(path).endswith(".seg"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    def writing(fd: int, data: Any) -> int:
        if broken["header"] and bytes(data[:8]) == b"WTRSPOOL":
            return 3
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "write", writing)
    first = [spool.append("s", n, "m" * 1000) for n in range(3)]
    broken["open"] = True
    with pytest.warns(WatchtowerRefreshWarning, match="Too many open files"):
        while spool.append("s", 9, "m" * 1000) is not None:  # until the next rollover
            pass
    assert spool.append("s", 9, "m") is None
    broken["open"], broken["header"] = False, True
    assert spool.append("s", 9, "m") is None  # the new segment's header is torn
    broken["header"] = False
    assert spool.append("s", 10, "back") is not None
    spool.close()
    monkeypatch.setattr(os, "open", real_open)
    monkeypatch.setattr(os, "write", real_write)
    found, stats = replay(tmp_path)
    assert found[-1].message == "back"
    assert first[0] == found[0].id
    assert stats.corrupt == 0


def _tail_id(owner: Path) -> int:
    return int.from_bytes((owner / "tail").read_bytes()[16:], "little")


def test_the_fork_hook_gives_the_child_its_own_owner(tmp_path: Path) -> None:
    """The hook os.fork runs in a child, run here so that its effects are measured."""
    spool = open_spool(tmp_path)
    assert spool.append("s", 0, "parent's") == 1
    parent_owner = spool.owner_directory
    with adopt(tmp_path / "elsewhere", GROUP) as adoption:
        adoption._claims.append(
            _Claim(
                tmp_path,
                "owner",
                tuple(os.open(tmp_path, os.O_RDONLY) for _ in range(3)),  # type: ignore[arg-type]
                adoption.stats,
            )
        )
        forks.after_fork_in_child()  # as in a child: the parent's descriptors are dropped
        assert all(claim.lock_fd == -1 for claim in adoption._claims)
    spool.ack([1])  # the parent's id: ignored
    assert spool.append("s", 1, "child's") == 2
    assert spool.owner_directory not in (None, parent_owner)
    # each owner's tail file holds the last id its own writer appended: the child stores
    # into its own, never into its parent's
    assert parent_owner is not None
    assert spool.owner_directory is not None
    assert _tail_id(parent_owner) == 1
    assert _tail_id(spool.owner_directory) == 2
    spool.close()
    # two owners made in the same millisecond: either may come first
    assert sorted(r.message for r in replay(tmp_path)[0]) == ["child's", "parent's"]


def test_bad_input_is_counted_not_raised(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    assert spool.append("s" * 70_000, 0, "stream name too long for its u16 length") is None
    assert spool.append("s", 2**70, "timestamp out of range") is None
    assert spool.append("s", 0, "x" * (spool_format.MAX_PAYLOAD + 1)) is None
    assert spool.stats.errors == 3
    assert spool.append("s", 0, "fine") == 1
    with pytest.warns(WatchtowerRefreshWarning, match="acknowledgements"):
        spool.ack(["not an id"])  # type: ignore[list-item]
    assert spool.stats.errors == 4
    spool.close()
    with adopt(tmp_path, GROUP) as adoption:
        [batch] = list(adoption)
        with pytest.warns(WatchtowerRefreshWarning, match="acknowledgements"):
            batch.ack(["not an id"])  # type: ignore[list-item]
        batch.ack([12345])  # not in the batch: ignored
        batch.ack()
        batch.ack()
        assert adoption.stats.acked == 1


def test_closing_an_adoption_stops_its_iteration(tmp_path: Path) -> None:
    _dead_owners(tmp_path, owners_=2, records=30)
    with adopt(tmp_path, GROUP, batch_records=10) as adoption:
        batches = iter(adoption)
        next(batches)
        adoption.close()
        assert list(batches) == []
    assert len(replay(tmp_path)[0]) == 60


# ----------------------------------------------------------------------------- threads and forks


def test_acks_from_several_threads_while_appending(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=8192)
    pending: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender() -> None:
        while not stop.is_set() or pending:
            with lock:
                batch, pending[:] = pending[:25], pending[25:]
            spool.ack(batch)

    senders = [threading.Thread(target=sender) for _ in range(2)]
    for thread in senders:
        thread.start()
    for n in range(3000):
        record_id = spool.append(f"s{n % 4}", n, message(n, 50))
        assert record_id is not None
        with lock:
            pending.append(record_id)
    stop.set()
    for thread in senders:
        thread.join()
    assert spool.stats.acked == 3000
    spool.close()
    assert list(tmp_path.iterdir()) == []


def _child_appends(spool: Spool, report: int, go: int) -> None:  # pragma: no cover
    spool.ack([1])  # the parent's record: not the child's to settle
    record_id = spool.append("s", 0, "from the child")
    owner = spool.owner_directory
    os.write(report, f"{record_id} {owner}\n".encode())
    os.read(go, 1)  # live until the parent says so


def test_a_forked_child_writes_to_its_own_owner_and_drops_the_parents_lock(
    tmp_path: Path,
) -> None:
    spool = open_spool(tmp_path)
    assert spool.append("s", 0, "from the parent") == 1
    report_read, report_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = in_child(lambda: _child_appends(spool, report_write, go_read))
    child_id, child_owner = os.read(report_read, 4096).decode().split()
    assert int(child_id) == 2  # ids go on from the parent's, so old ones never collide
    assert Path(child_owner) != spool.owner_directory
    assert spool.append("s", 1, "parent again") == 2

    spool.close()  # unacknowledged: left for an adopter, though the child still lives
    found, _ = replay(tmp_path)
    assert [r.message for r in found] == ["from the parent", "parent again"]
    assert [s.state for s in describe(tmp_path)] == ["alive"]  # the child's owner

    os.write(go_write, b"x")
    assert exit_code(pid) == 0  # ended with os._exit: no close, nothing acknowledged
    found, _ = replay(tmp_path)
    assert [r.message for r in found] == ["from the child"]
    for fd in (report_read, report_write, go_read, go_write):
        os.close(fd)


# ----------------------------------------------------------------------------- inspection


def test_describe_summarises_each_owner(tmp_path: Path) -> None:
    dead = open_spool(tmp_path, "orders")
    for n in range(3):
        dead.append("s", 1_000 + n, "x" * 10)
    dead.ack([1])
    dead.close()
    live = open_spool(tmp_path, "payments")
    live.append("s", 5_000, "y")
    [first, second] = describe(tmp_path)
    assert (first.group, first.state, first.records, first.oldest_timestamp_ms) == (
        "orders",
        "dead",
        2,
        1_001,
    )
    assert first.pid == os.getpid()
    assert first.bytes > 0
    assert (second.group, second.state, second.records) == ("payments", "alive", 1)
    live.close()
    with pytest.raises(FileNotFoundError):
        describe(tmp_path / "missing")


@pytest.fixture(autouse=True)
def no_spool_left_open() -> Iterator[None]:
    """Each test closes what it opens, so no lock outlives it."""
    yield
    left = [spool for spool in forks.LIVE if isinstance(spool, Spool)]
    for spool in left:
        spool.close()
    assert not left


def test_acks_after_close_and_unrecordable_acks_bring_records_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = open_spool(tmp_path)  # one segment, so none is settled and deleted here
    ids = [spool.append("s", n, message(n, 500)) for n in range(20)]
    real_open = os.open

    def no_ack_files(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".ack"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_ack_files)
    with pytest.warns(WatchtowerRefreshWarning, match="No space left"):
        spool.ack([i for i in ids[:3] if i is not None])  # kept in memory only
    monkeypatch.setattr(os, "open", real_open)
    spool.ack([i for i in ids[3:12] if i is not None])
    spool.close()
    spool.ack([i for i in ids[12:] if i is not None])  # too late: the owner is released
    found, _ = replay(tmp_path)
    assert [r.timestamp_ms for r in found] == [0, 1, 2, *range(12, 20)]


def test_the_backlog_reads_back_own_records_in_order_skipping_acknowledged_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_format, "_CHUNK", 1024)  # chunks much smaller than segments
    spool = open_spool(tmp_path, segment_bytes=16 * 1024)
    ids = [spool.append(f"s{n % 3}", n, message(n, n % 7 * 40)) for n in range(600)]
    assert None not in ids
    spool.ack(range(100, 200))  # settled while still on disk: never read back
    big = spool.append("s", 600, message(600, 5000))  # one record larger than a chunk
    read: list[SpooledRecord] = []
    start = 1
    while batch := spool.backlog(start, max_records=64, max_bytes=4000):
        assert len(batch) <= 64
        read.extend(batch)
        start = batch[-1].id + 1
        if len(read) < 300:  # the tail grows while the backlog is read
            spool.append("s", 1000 + start, "logged while the backlog is read")
    expected = [n for n in range(601) if not 99 <= n < 199]
    assert [r.timestamp_ms for r in read][: len(expected)] == expected
    assert read[len(expected) - 1].id == big
    assert all(r.message == message(r.timestamp_ms, n % 7 * 40) for n, r in enumerate(read[:5]))
    assert spool.backlog(10_000) == []
    assert spool.backlog(1, max_records=3) == read[:3]  # from the start again, no hint
    assert spool.stats.corrupt == 0
    spool.ack(r.id for r in read)
    spool.close()
    assert spool.backlog(1) == []


def test_the_backlog_skips_damage_and_settled_segments(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=8192)
    for n in range(100):
        spool.append("s", n, message(n, 300))
    owner = spool.owner_directory
    assert owner is not None
    first, second = sorted(owner.glob("*.seg"))[:2]
    data = bytearray(second.read_bytes())
    data[100] ^= 0xFF  # one record of the second segment damaged after it was written
    second.write_bytes(bytes(data))
    first.unlink()  # as if settled and deleted by the sender meanwhile
    found = spool.backlog(1, max_records=1000, max_bytes=10**9)
    assert spool.stats.corrupt == 1
    second_first = int(second.stem, 16)
    # nothing of the deleted segment, nor the damaged first record of the next
    assert [r.id for r in found] == list(range(second_first + 1, 101))
    spool.close()
