"""Spool damage through the handler: every record either arrives or is counted in
``stats.corrupt``; damaged files are read in bounded time and memory."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_python
from tests.test_handler_spool import now_ms
from watchtower_refresh import WatchtowerRefreshWarning
from watchtower_refresh._spool import Spool, adopt, describe, layout, reading
from watchtower_refresh._spool.format import FRAME, MAX_PAYLOAD, SEGMENT_HEADER, SYNC
from watchtower_refresh.testing import FakeAWS

Read = Any
RECORDS = 3000


def killed_writer(directory: Path, group: str, records: int = RECORDS) -> Path:
    """A child writes ``records`` records to the spool and is killed with SIGKILL."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which coverage does not save
        try:
            os.close(read_end)
            spool = Spool.open(directory, group, segment_bytes=64 * 1024)
            assert spool is not None
            now = now_ms()
            for n in range(records):
                assert spool.append("s", now, f"record {n:05d} " + "x" * 80) is not None
            os.write(write_end, b"done")
            signal.pause()
        finally:
            os._exit(1)
    os.close(write_end)
    assert os.read(read_end, 4) == b"done"
    os.close(read_end)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    [owner] = [p for p in directory.iterdir() if p.name.startswith("g")]
    return owner


def records_and_marked(messages: list[str]) -> tuple[list[str], int]:
    """The records read back, and how many lost to damage their drop markers say."""
    markers = [m for m in messages if m.startswith("watchtower-refresh:")]
    marked = sum(int(n) for m in markers for n in re.findall(r"\(corrupt (\d+)\)$", m))
    return [m for m in messages if m not in markers], marked


def segments(owner: Path) -> list[Path]:
    found = sorted(owner.glob("*.seg"))
    assert len(found) >= 4  # enough for a segment in the middle and a last one
    return found


def _cut_in_the_middle(owner: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segment = segments(owner)[1]
    os.truncate(segment, segment.stat().st_size // 2 + 7)  # in the middle of a frame


def _cut_on_a_frame_boundary(owner: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segment = segments(owner)[2]
    data = segment.read_bytes()
    os.truncate(segment, data.index(SYNC, len(data) // 2))  # nothing torn: only gone


def _emptied(owner: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.truncate(segments(owner)[0], 0)


def _unreadable(owner: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = segments(owner)[1].name
    real = layout.open_file

    def failing(dir_fd: int, path: str, flags: int, **options: Any) -> int:
        if path == name:
            raise OSError(errno.EIO, "Input/output error")
        return real(dir_fd, path, flags, **options)

    monkeypatch.setattr(reading, "open_file", failing)


def _no_lock(owner: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (owner / "owner.lock").unlink()  # its writer has ended: it is adopted all the same


@pytest.mark.parametrize(
    "damage", [_cut_in_the_middle, _cut_on_a_frame_boundary, _emptied, _unreadable, _no_lock]
)
def test_every_record_of_a_damaged_spool_arrives_or_is_counted(
    aws: FakeAWS,
    make_handler: Any,
    messages: Read,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: Any,
) -> None:
    owner = killed_writer(tmp_path, "/spool/counted")
    damage(owner, monkeypatch)
    handler = make_handler("/spool/counted", spool_dir=str(tmp_path))
    assert handler.flush(timeout=60)
    delivered, marked = records_and_marked(messages("/spool/counted"))
    assert len(set(delivered)) == len(delivered)
    assert len(delivered) < RECORDS or damage is _no_lock
    assert len(delivered) + handler.stats.corrupt == RECORDS
    # Marked where records of the damaged segment are left to say which stream it was.
    placed = damage in (_cut_in_the_middle, _cut_on_a_frame_boundary)
    assert marked == (handler.stats.corrupt if placed else 0)
    handler.close()
    assert list(tmp_path.iterdir()) == []  # counted or delivered, then removed


def _cut_the_last_segment(owner: Path) -> None:
    last = segments(owner)[-1]
    os.truncate(last, last.stat().st_size // 2 + 7)  # in the middle of a frame


def test_a_cut_at_the_end_of_the_last_segment_is_counted_exactly(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    # After the last intact frame, only the writer's tail file says how many followed.
    owner = killed_writer(tmp_path, "/spool/tail")
    _cut_the_last_segment(owner)
    [summary] = describe(tmp_path)  # what `spool --dir` shows before the replay
    assert summary.records + summary.corrupt == RECORDS
    assert summary.corrupt > 1
    handler = make_handler("/spool/tail", spool_dir=str(tmp_path))
    assert handler.flush(timeout=60)
    delivered, marked = records_and_marked(messages("/spool/tail"))
    assert len(set(delivered)) == len(delivered) < RECORDS
    assert len(delivered) + handler.stats.corrupt == RECORDS
    assert handler.stats.corrupt == summary.corrupt == marked  # and the stream says so
    handler.close()
    assert list(tmp_path.iterdir()) == []


def test_a_spool_of_an_earlier_version_without_a_tail_file_replays_as_before(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    owner = killed_writer(tmp_path, "/spool/older")
    (owner / "tail").unlink()
    meta = json.loads((owner / "meta.json").read_text())
    del meta["segment_bytes"]
    (owner / "meta.json").write_text(json.dumps(meta))
    _cut_the_last_segment(owner)
    handler = make_handler("/spool/older", spool_dir=str(tmp_path))
    assert handler.flush(timeout=60)
    delivered, marked = records_and_marked(messages("/spool/older"))
    assert len(set(delivered)) == len(delivered) < RECORDS
    assert handler.stats.corrupt == marked == 1  # nothing says how many followed: one
    handler.close()
    assert list(tmp_path.iterdir()) == []


# What the last segment (64 KiB segments) could hold at the most, in the smallest frames.
CAPACITY = (64 * 1024 + FRAME.size + MAX_PAYLOAD) // (FRAME.size + 18)


@pytest.mark.parametrize(
    "forge",
    [
        lambda first: 2**64 - 1,  # far beyond what the last segment could hold
        lambda first: first + CAPACITY,  # just beyond it
        lambda first: 0,  # below the last segment's first id
        lambda first: first + 1,  # below the last intact record: stale, or an edit
    ],
    ids=["huge", "beyond", "zero", "stale"],
)
def test_a_forged_tail_file_never_makes_the_count_absurd_nor_loses_a_record(
    aws: FakeAWS,
    make_handler: Any,
    messages: Read,
    tmp_path: Path,
    forge: Callable[[int], int],
) -> None:
    owner = killed_writer(tmp_path, "/spool/forged")
    tail = owner / "tail"
    first = int(segments(owner)[-1].name.removesuffix(".seg"), 16)
    tail.write_bytes(tail.read_bytes()[:16] + forge(first).to_bytes(8, "little"))
    _cut_the_last_segment(owner)
    handler = make_handler("/spool/forged", spool_dir=str(tmp_path))
    assert handler.flush(timeout=60)
    delivered, marked = records_and_marked(messages("/spool/forged"))
    assert len(set(delivered)) == len(delivered) < RECORDS
    # every record that survived the cut arrives; the value is ignored: counted as before
    assert sorted(int(m.split()[1]) for m in delivered) == list(range(len(delivered)))
    assert handler.stats.corrupt == marked == 1
    handler.close()
    assert list(tmp_path.iterdir()) == []


def test_a_forged_tail_file_adds_no_more_than_the_last_segment_could_hold(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    owner = killed_writer(tmp_path, "/spool/bounded")
    tail = owner / "tail"
    first = int(segments(owner)[-1].name.removesuffix(".seg"), 16)
    forged = first + CAPACITY - 1  # the most it may claim
    tail.write_bytes(tail.read_bytes()[:16] + forged.to_bytes(8, "little"))
    handler = make_handler("/spool/bounded", spool_dir=str(tmp_path))
    assert handler.flush(timeout=60)
    delivered, marked = records_and_marked(messages("/spool/bounded"))
    assert len(delivered) == RECORDS  # nothing was cut: all arrive
    assert handler.stats.corrupt == marked == forged - RECORDS < CAPACITY
    handler.close()
    assert list(tmp_path.iterdir()) == []


def test_an_owner_without_its_lock_whose_process_may_live_is_named_in_one_warning(
    tmp_path: Path,
) -> None:
    owner = killed_writer(tmp_path, "/spool/waiting", records=10)
    (owner / "owner.lock").unlink()
    meta = json.loads((owner / "meta.json").read_text())
    # as if written by a process that still runs (this one): it may be its writer
    live = owner.with_name(owner.name.replace(f"-p{meta['pid']}-", f"-p{os.getpid()}-"))
    owner.rename(live)
    with pytest.warns(WatchtowerRefreshWarning, match="no owner.lock") as caught:
        assert list(adopt(tmp_path, "/spool/waiting")) == []
    assert len(caught) == 1
    assert str(live) in str(caught[0].message)
    assert f"process {os.getpid()} is running" in str(caught[0].message)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert list(adopt(tmp_path, "/spool/waiting")) == []  # adopted again and again
    assert again == []  # one warning per process
    assert len(list(live.glob("*.seg"))) == 1  # nothing deleted


def _replay_in_a_child(aws: FakeAWS, directory: Path, group: str) -> dict[str, Any]:
    script = textwrap.dedent(
        f"""
        import json, time
        from watchtower_refresh import RefreshingCloudWatchLogHandler
        started = time.monotonic()
        handler = RefreshingCloudWatchLogHandler({group!r}, spool_dir={str(directory)!r},
                                                 send_interval=0.05)
        assert handler.flush(timeout=50)
        seconds = time.monotonic() - started
        stats = handler.stats
        handler.close()
        print(json.dumps({{"seconds": seconds, "replayed": stats.replayed,
                           "corrupt": stats.corrupt}}))
        """
    )
    child = run_python(aws, "-c", script)  # with a 60 s timeout: a hang fails the test
    assert child.returncode == 0, child.stderr
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"replay of {group}: {result}")  # how long it took, for the record (-s)
    return result


def _dead_owner(directory: Path, group: str, records: int) -> Path:
    spool = Spool.open(directory, group)
    assert spool is not None
    now = now_ms()
    for n in range(records):
        spool.append("s", now, f"valid {n}")
    owner = spool.owner_directory
    assert owner is not None
    spool.close()
    [segment] = owner.glob("*.seg")
    return segment


def test_frames_that_claim_huge_payloads_are_stepped_over_in_bounded_time(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    segment = _dead_owner(tmp_path, "/spool/crafted", 1376)
    frames = segment.read_bytes()[len(SEGMENT_HEADER) :]
    claim = FRAME.pack(SYNC, MAX_PAYLOAD, 0)  # a header claiming 4 MiB, checksum wrong
    crafted = claim * (8 * 1024 * 1024 // len(claim))
    segment.write_bytes(SEGMENT_HEADER + crafted + frames)
    result = _replay_in_a_child(aws, tmp_path, "/spool/crafted")
    assert sorted(messages("/spool/crafted")) == sorted(f"valid {n}" for n in range(1376))
    assert (result["replayed"], result["corrupt"]) == (1376, 0)


def test_a_segment_with_garbage_appended_is_read_in_bounded_memory(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    segment = _dead_owner(tmp_path, "/spool/garbage", 500)
    with segment.open("ab") as out:
        for _ in range(200):
            out.write(os.urandom(1024 * 1024))
    # The reading alone, in a process of its own: its peak memory is the spool's.
    script = textwrap.dedent(
        f"""
        import resource, time
        from watchtower_refresh._spool import adopt
        started = time.monotonic()
        with adopt({str(tmp_path)!r}, "/spool/garbage") as adoption:
            records = sum(len(batch.records) for batch in adoption)  # not acknowledged
        # getrusage's ru_maxrss keeps the forking parent's peak across exec on Linux;
        # VmHWM is this process image's own peak.
        with open("/proc/self/status") as status:
            hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")]
        peak = int(hwm[0]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(records, adoption.stats.corrupt, peak, time.monotonic() - started)
        """
    )
    child = run_python(aws, "-c", script)  # with a 60 s timeout: a hang fails the test
    assert child.returncode == 0, child.stderr
    records, corrupt, peak, seconds = child.stdout.split()
    print(f"read 200 MB of garbage in {float(seconds):.2f} s, peak RSS {int(peak) >> 20} MiB")
    # garbage after the last record: the tail file says no record was lost there
    assert (int(records), int(corrupt)) == (500, 0)
    assert int(peak) < 150 * 1024 * 1024
    handler = make_handler("/spool/garbage", spool_dir=str(tmp_path))
    assert handler.flush(timeout=60)
    delivered, marked = records_and_marked(messages("/spool/garbage"))
    assert sorted(delivered) == sorted(f"valid {n}" for n in range(500))
    assert marked == handler.stats.corrupt == 0  # nothing lost: nothing to mark
    handler.close()
