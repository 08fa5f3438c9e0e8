"""The handler with a disk spool: what is written, acknowledged, kept and replayed."""

from __future__ import annotations

import collections
import datetime
import json
import logging
import logging.config
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

import watchtower_refresh._delivery.backlog
from tests.conftest import logger_for, run_python, soak
from watchtower_refresh import (
    ConfigurationError,
    RefreshingCloudWatchLogHandler,
    WatchtowerRefreshWarning,
)
from watchtower_refresh._cli import EXIT_DEMO_LOST, EXIT_USAGE, main
from watchtower_refresh._config import logging_config
from watchtower_refresh._spool import Spool
from watchtower_refresh.testing import FakeAWS, Fault

Read = Callable[[str], list[str]]
DAY_MS = 24 * 3600 * 1000


def spooled(directory: Path) -> list[Path]:
    """Segment files left in the spool directory."""
    return sorted(directory.glob("g*/*.seg"))


def dead_owner(directory: Path, group: str, records: list[tuple[str, int, str]]) -> Path:
    """Leave records in the spool as a process that died would: written, never acknowledged."""
    spool = Spool.open(directory, group)
    assert spool is not None
    for stream, timestamp, message in records:
        assert spool.append(stream, timestamp, message) is not None
    owner = spool.owner_directory
    assert owner is not None
    spool.close()  # releases the owner's lock, as the kernel does when a process dies
    return owner


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- options


def test_spool_options_are_validated_without_touching_the_disk(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    handler = RefreshingCloudWatchLogHandler(
        "grp", spool_dir=str(missing), spool_max_bytes="1048576", spool_fsync="yes"
    )
    assert handler.spool_dir == str(missing)
    assert handler.spool_max_bytes == 1_048_576
    assert handler.spool_fsync is True
    assert not missing.exists()
    assert RefreshingCloudWatchLogHandler("grp", spool_dir=tmp_path).spool_dir == str(tmp_path)
    assert RefreshingCloudWatchLogHandler("grp", spool_dir="").spool_dir is None
    with pytest.raises(ConfigurationError, match="spool_max_bytes"):
        RefreshingCloudWatchLogHandler("grp", spool_dir=str(tmp_path), spool_max_bytes="lots")
    with pytest.raises(ConfigurationError, match="spool_max_bytes"):
        RefreshingCloudWatchLogHandler("grp", spool_max_bytes=1000)
    with pytest.raises(ConfigurationError, match="spool_fsync"):
        RefreshingCloudWatchLogHandler("grp", spool_fsync="sometimes")
    with pytest.raises(ConfigurationError, match="spool_dir"):
        RefreshingCloudWatchLogHandler("grp", spool_dir=3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- own records


def test_delivered_records_leave_the_spool(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    handler = make_handler("/spool/own", spool_dir=str(tmp_path))
    logger = logger_for(handler)
    for n in range(300):
        logger.info("record %d", n)
    assert spooled(tmp_path)  # on disk before emit() returned
    assert handler.flush(timeout=10)
    handler.close()
    assert sorted(messages("/spool/own")) == sorted(f"record {n}" for n in range(300))
    stats = handler.stats
    assert stats.delivered == 300
    assert stats.replayed == 0
    assert list(tmp_path.iterdir()) == []  # every record acknowledged: nothing left


def test_a_signal_handler_logging_in_the_middle_of_a_spool_write_neither_deadlocks_nor_loses(
    aws: FakeAWS,
    make_handler: Any,
    messages: Read,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A signal handler runs between two bytecodes of the thread it interrupts: here, as
    # emit() writes the record to the spool. Its own record is queued in memory only.
    handler = make_handler("/spool/signal", spool_dir=str(tmp_path))
    logger = logger_for(handler)
    logger.info("opens the spool")
    real_write = os.write
    interrupted: list[bool] = []

    def write(fd: int, data: Any) -> int:
        if not interrupted:
            interrupted.append(True)
            logger.info("logged by a signal handler")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    logger.info("interrupted")
    monkeypatch.setattr(os, "write", real_write)
    assert handler.flush(timeout=10)
    handler.close()
    assert sorted(messages("/spool/signal")) == sorted(
        ["opens the spool", "logged by a signal handler", "interrupted"]
    )
    stats = handler.stats
    assert (stats.delivered, stats.dropped_total, stats.queued) == (3, 0, 0)
    assert list(tmp_path.iterdir()) == []  # the spooled ones acknowledged, nothing left


def test_records_no_fix_could_make_acceptable_leave_the_spool(
    aws: FakeAWS, make_handler: Any, tmp_path: Path
) -> None:
    aws.injector.add_fault(Fault("InvalidParameterException", action="PutLogEvents"))
    handler = make_handler("/spool/invalid", spool_dir=str(tmp_path))
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="InvalidParameter"):
        for n in range(5):
            logger.info("invalid %d", n)
        handler.flush(timeout=10)
    handler.close()
    assert handler.stats.dropped == {"InvalidParameterException": 5}
    assert list(tmp_path.iterdir()) == []  # a replay would be refused the same way


@pytest.fixture
def short_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Held records tried again after 0.2 s, then 0.4 s, 0.8 s..., not after minutes."""
    monkeypatch.setattr(watchtower_refresh._delivery.backlog, "HOLD_FIRST", 0.2)


def test_a_spool_holds_denied_records_and_delivers_them_once_the_denial_ends(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path, short_holds: None
) -> None:
    denied = aws.injector.add_fault(
        Fault("AccessDeniedException", action="PutLogEvents", status=400)
    )
    handler = make_handler("/spool/held", spool_dir=str(tmp_path), max_batch_count=20)
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match=r"denied.*held in the spool.*stats\.queued"):
        for n in range(60):
            logger.info("during the denial %d", n)
        assert not handler.flush(timeout=1.5)  # tried, refused, tried again after the hold
        for n in range(40):
            logger.info("later in the denial %d", n)
        assert not handler.flush(timeout=0.5)
    stats = handler.stats
    assert (stats.delivered, stats.dropped, stats.queued) == (0, {}, 100)
    assert len(spooled(tmp_path)) >= 1  # on disk, not given up
    aws.injector.remove_fault(denied)  # the policy is fixed
    assert handler.flush(timeout=30)
    expected = [f"during the denial {n}" for n in range(60)]
    expected += [f"later in the denial {n}" for n in range(40)]
    assert sorted(messages("/spool/held")) == sorted(expected)
    stats = handler.stats
    assert (stats.delivered, stats.dropped, stats.queued) == (100, {}, 0)
    handler.close()
    assert list(tmp_path.iterdir()) == []


def test_without_a_spool_denied_records_are_dropped_and_counted(
    aws: FakeAWS, make_handler: Any, messages: Read, short_holds: None
) -> None:
    denied = aws.injector.add_fault(
        Fault("AccessDeniedException", action="PutLogEvents", status=400)
    )
    handler = make_handler("/spool/memory-denied")
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match=r"denied.*5 records dropped"):
        for n in range(5):
            logger.info("denied %d", n)
        handler.flush(timeout=10)
    aws.injector.remove_fault(denied)
    logger.info("after the fix")
    assert handler.flush(timeout=10)
    stats = handler.stats
    assert (stats.delivered, stats.dropped, stats.queued) == (1, {"AccessDeniedException": 5}, 0)
    [marker, after] = messages("/spool/memory-denied")  # lost: the stream says so
    assert marker.startswith("watchtower-refresh: 5 records dropped ")  # "between" or "at"
    assert marker.endswith(" UTC (AccessDeniedException 5)")
    assert after == "after the fix"


def test_records_held_at_close_stay_on_disk_for_the_next_process(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path, short_holds: None
) -> None:
    denied = aws.injector.add_fault(
        Fault("AccessDeniedException", action="PutLogEvents", status=400)
    )
    handler = make_handler("/spool/held-close", spool_dir=str(tmp_path), flush_timeout=1)
    logger = logger_for(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in range(30):
            logger.info("held %d", n)
        handler.flush(timeout=0.5)
        handler.close()
    stats = handler.stats
    assert stats.delivered == 0
    assert stats.dropped_total == 30  # close() gave them up here, counted...
    aws.injector.remove_fault(denied)
    later = make_handler("/spool/held-close", spool_dir=str(tmp_path))
    assert later.flush(timeout=20)  # ...and the next handler delivers them from the disk
    assert sorted(messages("/spool/held-close")) == sorted(f"held {n}" for n in range(30))
    assert later.stats.replayed == 30


def _log_through_an_outage(tmp_path: Path, aws: FakeAWS, group: str, records: int) -> Any:
    """A child process logs ``records`` records while PutLogEvents fails, then exits."""
    script = textwrap.dedent(
        f"""
        import logging, warnings
        from watchtower_refresh import RefreshingCloudWatchLogHandler
        warnings.simplefilter("ignore")
        handler = RefreshingCloudWatchLogHandler(
            {group!r}, spool_dir={str(tmp_path)!r}, queue_max_events=10, flush_timeout=0.5,
            send_interval=0.05,
        )
        logger = logging.getLogger("child")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        for n in range({records}):
            logger.info("outage %d", n)
        handler.close()
        print(dict(handler.stats.dropped))
        """
    )
    return run_python(aws, "-c", script)


def test_records_kept_on_disk_through_an_outage_are_replayed_by_the_next_process(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    child = _log_through_an_outage(tmp_path, aws, "/spool/outage", 50)
    assert child.returncode == 0, child.stderr
    # Not delivered in that process (10 in memory, 40 on disk when it closed), yet kept.
    assert child.stdout.strip() == "{'shutdown': 50}"
    aws.injector.remove_fault(outage)
    handler = make_handler("/spool/outage", spool_dir=str(tmp_path))
    assert handler.flush(timeout=20)
    assert sorted(messages("/spool/outage")) == sorted(f"outage {n}" for n in range(50))
    stats = handler.stats
    assert stats.replayed == stats.delivered == 50
    assert stats.dropped == {}
    handler.close()
    assert list(tmp_path.iterdir()) == []


def test_replay_keeps_streams_and_timestamps_and_counts_the_too_old_as_rejected(
    aws: FakeAWS, make_handler: Any, tmp_path: Path
) -> None:
    now = now_ms()
    dead_owner(
        tmp_path,
        "/spool/replay",
        [
            ("first", now - 15 * DAY_MS, "far too old"),
            ("first", now - 2000, "one"),
            ("second", now - 1000, "two"),
            ("first", now - 500, "three"),
        ],
    )
    dead_owner(tmp_path, "/spool/other-group", [("s", now, "not ours")])
    handler = make_handler("/spool/replay", spool_dir=str(tmp_path))
    with pytest.warns(WatchtowerRefreshWarning, match="older than 14 days"):
        assert handler.flush(timeout=20)
    stats = handler.stats
    assert stats.replayed == 3
    assert stats.rejected == 1
    assert stats.dropped == {"too_old": 1}
    client = boto3.client("logs", endpoint_url=aws.endpoint_url)
    found = {
        stream: [
            (e["timestamp"], e["message"])
            for e in client.get_log_events(logGroupName="/spool/replay", logStreamName=stream)[
                "events"
            ]
        ]
        for stream in ("first", "second")
    }
    # The adopter marks what it could not deliver of the dead process's records, where the
    # service still takes it: 14 days back at most.
    (stamped, marker), *records = found["first"]
    lost = datetime.datetime.fromtimestamp((now - 15 * DAY_MS) / 1000, datetime.timezone.utc)
    assert marker.startswith("watchtower-refresh: 1 record dropped at ")
    assert marker.endswith(f"{lost:%H:%M:%S}.{lost.microsecond // 1000:03d} UTC (too_old 1)")
    assert now - 14 * DAY_MS < stamped < now - 13 * DAY_MS
    assert {**found, "first": records} == {
        "first": [(now - 2000, "one"), (now - 500, "three")],
        "second": [(now - 1000, "two")],
    }
    handler.close()
    left = list(tmp_path.iterdir())
    assert len(left) == 1  # the other group's records wait for a handler of that group


@pytest.mark.parametrize("large_events", ["truncate", "split"])
def test_a_replayed_record_over_the_size_limit_is_cut_as_a_new_one_would_be(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path, large_events: str
) -> None:
    # Written by a process whose limit was larger: the adopter sends it under its own.
    dead_owner(tmp_path, "/spool/long", [("s", now_ms(), "x" * 5000)])
    handler = make_handler(
        "/spool/long", spool_dir=str(tmp_path), max_message_size=1026, large_events=large_events
    )
    assert handler.flush(timeout=20)
    got = messages("/spool/long")
    assert all(len(m.encode()) <= 1000 for m in got)
    stats = handler.stats
    assert stats.replayed == 1
    if large_events == "split":
        assert len(got) > 5  # 5000 bytes in parts of at most 1000, with their headers
        assert "".join(got).count("x") == 5000
        assert stats.truncated == 0
    else:
        marker = " [truncated: 5000 bytes in all]"
        assert got == ["x" * (1000 - len(marker)) + marker]
        assert stats.truncated == 1


# --------------------------------------------------------------------------- full, damaged


def test_a_full_spool_keeps_records_in_memory_and_counts_only_what_neither_kept(
    aws: FakeAWS, make_handler: Any, tmp_path: Path
) -> None:
    aws.injector.add_fault(Fault("ServiceUnavailableException", action="PutLogEvents", status=503))
    handler = make_handler(
        "/spool/full",
        spool_dir=str(tmp_path),
        spool_max_bytes=65536,
        queue_max_events=20,
        flush_timeout=0.2,
    )
    logger = logger_for(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(200):
            logger.info("%d %s", n, "x" * 1000)
    full = [w for w in caught if "spool_max_bytes" in str(w.message)]
    assert len(full) == 1
    stats = handler.stats
    # Roughly 60 fit on disk (20 of them in memory too); the other ~140 could be kept
    # neither on disk nor in the full memory queue.
    assert set(stats.dropped) == {"spool_full"}
    assert 100 < stats.dropped["spool_full"] < 160
    assert stats.queued + stats.dropped["spool_full"] == 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        handler.close()


def test_survivors_of_damaged_spool_files_arrive_and_the_damage_is_counted(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    now = now_ms()
    torn = dead_owner(tmp_path, "/spool/damaged", [("s", now, f"torn {n}") for n in range(10)])
    flipped = dead_owner(tmp_path, "/spool/damaged", [("s", now, f"flip {n}") for n in range(10)])
    (segment,) = torn.glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-5])  # killed in the middle of the last record
    (segment,) = flipped.glob("*.seg")
    data = bytearray(segment.read_bytes())
    at = data.index(b"flip 4")
    data[at] ^= 0xFF  # a stray edit in the fifth record
    segment.write_bytes(bytes(data))
    handler = make_handler("/spool/damaged", spool_dir=str(tmp_path))
    assert handler.flush(timeout=20)
    expected = [f"torn {n}" for n in range(9)] + [f"flip {n}" for n in range(10) if n != 4]
    got = messages("/spool/damaged")
    # Each dead process's loss is marked, by its adopter, in the stream of the records
    # around it: one marker per owner, as each owner's replay is a put of its own.
    when = datetime.datetime.fromtimestamp(now / 1000, datetime.timezone.utc)
    marker = (
        f"watchtower-refresh: 1 record dropped at {when:%H:%M:%S}."
        f"{when.microsecond // 1000:03d} UTC (corrupt 1)"
    )
    assert [m for m in got if m.startswith("watchtower-refresh:")] == [marker, marker]
    assert sorted(m for m in got if m != marker) == sorted(expected)
    stats = handler.stats
    assert stats.replayed == 18
    assert stats.corrupt == 2
    handler.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("problem", ["missing", "a file", "read-only"])
def test_an_unusable_spool_dir_is_one_warning_and_memory_only_delivery(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path, problem: str
) -> None:
    directory = tmp_path / "spool"
    if problem == "a file":
        directory.write_text("not a directory")
    if problem == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only directories")
        directory.mkdir(mode=0o500)
    handler = make_handler("/spool/unusable", spool_dir=str(directory))
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="in memory only") as caught:
        for n in range(20):
            logger.info("memory %d", n)
    assert len([w for w in caught if "spool" in str(w.message)]) == 1
    assert handler.flush(timeout=10)
    assert sorted(messages("/spool/unusable")) == sorted(f"memory {n}" for n in range(20))
    assert handler.stats.delivered == 20


def test_a_record_logged_after_close_opens_a_new_writer(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    handler = make_handler("/spool/reopen", spool_dir=str(tmp_path))
    logger = logger_for(handler)
    logger.info("before")
    handler.close()
    assert list(tmp_path.iterdir()) == []
    logger.info("after")
    assert handler.flush(timeout=10)
    handler.close()
    assert sorted(messages("/spool/reopen")) == ["after", "before"]
    assert list(tmp_path.iterdir()) == []


def test_records_sent_from_the_callers_thread_are_acknowledged(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    handler = make_handler("/spool/sync", spool_dir=str(tmp_path), use_queues=False)
    logger = logger_for(handler)
    logger.log(logging.WARNING, "synchronous")
    handler.close()
    assert messages("/spool/sync") == ["synchronous"]
    assert list(tmp_path.iterdir()) == []


def test_use_queues_false_still_sends_from_the_callers_thread_after_a_flush(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    # With a spool, a flush() starts the sender, to replay what dead processes left: the
    # records of a use_queues=False handler must still be sent before the log call returns.
    handler = make_handler(
        "/spool/sync-flushed", spool_dir=str(tmp_path), use_queues=False, send_interval=3600
    )
    assert handler.flush(timeout=10)
    logger_for(handler).warning("sent before the call returns")
    assert messages("/spool/sync-flushed") == ["sent before the call returns"]
    handler.close()


# --------------------------------------------------------------------------- SIGKILL


_CRASH_CHILD = """
import logging, os, sys, time, warnings
warnings.simplefilter("ignore")
from watchtower_refresh import RefreshingCloudWatchLogHandler
group, directory = sys.argv[1], sys.argv[2]
handler = RefreshingCloudWatchLogHandler(
    group, spool_dir=directory, send_interval=0.02, max_batch_count=50
)
logger = logging.getLogger("crash")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
for n in range(1_000_000):
    logger.info("crash %d", n)
    os.write(1, b"%d\\n" % n)  # after the log call returned: this record must survive
    if n % 16 == 0:
        time.sleep(0.001)
"""


@pytest.mark.slow
@pytest.mark.soak
def test_sigkill_at_random_points_loses_no_record_whose_log_call_returned(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    rng = random.Random(10)
    max_batch = 50
    environment = {**os.environ, **aws.environment()}
    for run in range(soak(6, 20)):
        group = f"/spool/crash-{run}"
        directory = tmp_path / f"run-{run}"
        directory.mkdir()
        slow_puts = None
        if run % 2:  # kill while a put is in flight: the service may accept it after
            slow_puts = aws.injector.add_fault(Fault("", action="PutLogEvents", delay=0.15))
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, group, str(directory)],
            stdout=subprocess.PIPE,
            env=environment,
        )
        assert child.stdout is not None
        returned: set[int] = set()
        kill_after = rng.randint(1, 2500)
        for line in child.stdout:
            returned.add(int(line))
            if len(returned) >= kill_after:
                break
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
        returned.update(int(n) for n in rest.split())
        if slow_puts is not None:
            aws.injector.remove_fault(slow_puts)
            time.sleep(0.2)  # let a put held by the delay land: its batch is the duplicate
        handler = RefreshingCloudWatchLogHandler(group, spool_dir=str(directory))
        try:
            assert handler.flush(timeout=20)
        finally:
            handler.close()
        found = collections.Counter(int(m.split()[1]) for m in messages(group))
        missing = returned - set(found)
        assert not missing, f"run {run}: {len(missing)} returned records lost, {handler.stats}"
        duplicates = sum(count - 1 for count in found.values())
        assert duplicates <= max_batch, f"run {run}: {duplicates} duplicates"
        stats = handler.stats
        assert duplicates <= stats.replayed
        assert stats.dropped == {}
        assert list(directory.iterdir()) == []


# --------------------------------------------------------------------------- configuration, CLI


def test_configure_logging_and_the_environment_give_the_spool_dir(tmp_path: Path) -> None:
    config = logging_config(
        log_group="/spool/config", environ={"WATCHTOWER_REFRESH_SPOOL_DIR": str(tmp_path)}
    )
    assert config["handlers"]["cloudwatch"]["spool_dir"] == str(tmp_path)
    config = logging_config(log_group="/spool/config", spool_dir="/elsewhere", environ={})
    assert config["handlers"]["cloudwatch"]["spool_dir"] == "/elsewhere"
    logging.config.dictConfig(
        logging_config(log_group="/spool/config", spool_dir=str(tmp_path), environ={})
    )
    (handler,) = [
        h for h in logging.getLogger().handlers if isinstance(h, RefreshingCloudWatchLogHandler)
    ]
    assert handler.spool_dir == str(tmp_path)


def test_the_cli_delivers_what_dead_processes_left(
    aws: FakeAWS, messages: Read, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = now_ms()
    dead_owner(tmp_path, "/spool/cli", [("web-1", now - n, f"left {n}") for n in range(30)])
    assert main(["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/cli"]) == 0
    out = capsys.readouterr().out
    assert "records delivered  30" in out
    assert out.rstrip().endswith("OK")
    assert sorted(messages("/spool/cli")) == sorted(f"left {n}" for n in range(30))
    assert list(tmp_path.iterdir()) == []
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/cli", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == 0


def test_the_cli_deliver_says_which_other_log_groups_still_wait(
    aws: FakeAWS, messages: Read, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = now_ms()
    dead_owner(tmp_path, "/spool/given", [("s", now, "given 1"), ("s", now, "given 2")])
    dead_owner(tmp_path, "/spool/other", [("s", now - n, f"other {n}") for n in range(3)])
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/given"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "records delivered  2" in out
    other = "other log groups   /spool/other (3 records): run again with --log-group for each"
    assert other in out
    assert sorted(messages("/spool/given")) == ["given 1", "given 2"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["other_log_groups"] == {"/spool/other": 3}
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/other"]
    assert main(args) == 0
    assert "other log groups" not in capsys.readouterr().out
    assert sorted(messages("/spool/other")) == [f"other {n}" for n in range(3)]


def test_the_cli_deliver_keeps_what_the_service_refuses_until_it_is_fixed(
    aws: FakeAWS, messages: Read, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = now_ms()
    dead_owner(tmp_path, "/spool/cli-denied", [("s", now - n, f"kept {n}") for n in range(50)])
    denied = aws.injector.add_fault(
        Fault("AccessDeniedException", action="PutLogEvents", status=400)
    )
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/cli-denied"]
    with pytest.warns(WatchtowerRefreshWarning, match="denied"):
        assert main([*args, "--timeout", "10"]) == EXIT_DEMO_LOST
    out = capsys.readouterr().out
    assert f"records refused    50, kept in {tmp_path}: PutLogEvents was denied" in out
    assert "Grant logs:PutLogEvents" in out  # the fix
    assert "--discard-refused to give them up" in out
    assert "records dropped    none" in out
    assert len(spooled(tmp_path)) == 1  # every record still on disk
    aws.injector.remove_fault(denied)
    assert main(args) == 0
    assert "records delivered  50" in capsys.readouterr().out
    assert sorted(messages("/spool/cli-denied")) == sorted(f"kept {n}" for n in range(50))
    assert list(tmp_path.iterdir()) == []


def test_the_cli_deliver_gives_refused_records_up_only_when_told(
    aws: FakeAWS, messages: Read, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_owner(
        tmp_path, "/spool/cli-discard", [("s", now_ms(), f"given up {n}") for n in range(20)]
    )
    aws.injector.add_fault(Fault("UnrecognizedClientException", action="PutLogEvents"))
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/cli-discard"]
    with pytest.warns(WatchtowerRefreshWarning):
        assert main([*args, "--json"]) == EXIT_DEMO_LOST
    report = json.loads(capsys.readouterr().out)
    assert (report["refused"], report["discarded"], report["dropped"]) == (20, 0, {})
    assert "UnrecognizedClientException" in report["refusal"]
    assert spooled(tmp_path)
    with pytest.warns(WatchtowerRefreshWarning):
        assert main([*args, "--discard-refused"]) == EXIT_DEMO_LOST
    assert "records refused    20, discarded (--discard-refused)" in capsys.readouterr().out
    assert not spooled(tmp_path)


def test_the_cli_deliver_needs_a_log_group_and_reports_an_outage(
    aws: FakeAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spool", "--dir", str(tmp_path), "--deliver"]) == EXIT_USAGE
    assert "--log-group" in capsys.readouterr().err
    missing = str(tmp_path / "missing")
    assert main(["spool", "--dir", missing, "--deliver", "--log-group", "g"]) == EXIT_USAGE
    dead_owner(tmp_path, "/spool/cli-down", [("s", now_ms(), "waiting")])
    aws.injector.add_fault(Fault("ServiceUnavailableException", action="PutLogEvents", status=503))
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/cli-down"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        assert main([*args, "--timeout", "0.5"]) == EXIT_DEMO_LOST
    assert "INCOMPLETE" in capsys.readouterr().out
    assert spooled(tmp_path)  # still on disk for a later try


# --------------------------------------------------------------------------- a long outage


def test_an_outage_longer_than_memory_loses_nothing_and_memory_stays_capped(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    handler = make_handler(
        "/spool/long-outage", spool_dir=str(tmp_path), queue_max_events=50, flush_timeout=30
    )
    logger = logger_for(handler)
    most_in_memory = 0
    for n in range(1000):
        logger.info("outage %04d", n)
        if n % 50 == 0:
            most_in_memory = max(most_in_memory, sum(map(len, handler.queues.values())))
    assert most_in_memory <= 50
    stats = handler.stats
    assert stats.queued == 1000  # 50 in memory, the rest on disk
    assert stats.dropped == {}
    assert handler.flush(timeout=0.2) is False
    aws.injector.remove_fault(outage)
    logger.info("outage %04d", 1000)  # logged after the outage: still after the backlog
    assert handler.flush(timeout=30)
    got = messages("/spool/long-outage")
    assert sorted(got) == [f"outage {n:04d}" for n in range(1001)]
    stats = handler.stats
    assert stats.delivered == 1001
    assert stats.dropped == {}
    assert stats.queued == 0
    handler.close()
    assert list(tmp_path.iterdir()) == []


def test_records_on_disk_at_close_are_counted_as_shutdown_and_replayed_later(
    aws: FakeAWS, make_handler: Any, tmp_path: Path
) -> None:
    aws.injector.add_fault(Fault("ServiceUnavailableException", action="PutLogEvents", status=503))
    handler = make_handler(
        "/spool/closed-in-outage", spool_dir=str(tmp_path), queue_max_events=10, flush_timeout=0.3
    )
    logger = logger_for(handler)
    for n in range(40):
        logger.info("kept %d", n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        handler.close()
    assert handler.stats.dropped == {"shutdown": 40}
    assert handler.stats.queued == 0
    assert spooled(tmp_path)


_FORKING_CHILD = """
import logging, os, sys, warnings
warnings.simplefilter("ignore")
from watchtower_refresh import RefreshingCloudWatchLogHandler
handler = RefreshingCloudWatchLogHandler(sys.argv[1], spool_dir=sys.argv[2], send_interval=0.05)
logger = logging.getLogger("forking")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.info("parent before fork")
pid = os.fork()
if pid == 0:
    logger.info("child, killed before sending")
    os.kill(os.getpid(), 9)
os.waitpid(pid, 0)
logger.info("parent after fork")
handler.close()
"""


def test_a_forked_child_spools_to_its_own_files_and_its_records_are_replayed(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    result = run_python(aws, "-c", _FORKING_CHILD, "/spool/fork", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(messages("/spool/fork")) == ["parent after fork", "parent before fork"]
    assert len(spooled(tmp_path)) == 1  # the child's, left when it was killed
    handler = RefreshingCloudWatchLogHandler("/spool/fork", spool_dir=str(tmp_path))
    assert handler.flush(timeout=10)
    handler.close()
    assert handler.stats.replayed == 1
    assert "child, killed before sending" in messages("/spool/fork")
    assert list(tmp_path.iterdir()) == []


def test_an_adopter_that_closes_during_an_outage_leaves_the_records_for_the_next(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    now = now_ms()
    dead_owner(tmp_path, "/spool/handover", [("s", now - n, f"handed {n}") for n in range(25)])
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    first = RefreshingCloudWatchLogHandler(
        "/spool/handover", spool_dir=str(tmp_path), flush_timeout=0.3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        assert first.flush(timeout=0.3) is False
        first.close()
    assert first.stats.replayed == 0
    assert first.stats.dropped == {"shutdown": 25}  # not delivered here, yet kept on disk
    aws.injector.remove_fault(outage)
    second = RefreshingCloudWatchLogHandler("/spool/handover", spool_dir=str(tmp_path))
    assert second.flush(timeout=20)
    second.close()
    assert second.stats.replayed == 25
    assert sorted(messages("/spool/handover")) == sorted(f"handed {n}" for n in range(25))
    assert list(tmp_path.iterdir()) == []


def test_a_spool_warning_from_emit_never_deadlocks_a_dictconfig(
    aws: FakeAWS, tmp_path: Path
) -> None:
    # With logging.captureWarnings(True) (Django turns it on) a warning goes to a logger,
    # which takes logging's lock. emit() holds the handler's lock; dictConfig holds logging's
    # and then takes each old handler's: a warning issued from emit() deadlocked the two.
    script = textwrap.dedent(
        f"""
        import logging, threading
        from watchtower_refresh import RefreshingCloudWatchLogHandler
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").addHandler(logging.StreamHandler())
        missing = {str(tmp_path / "missing")!r}
        handler = RefreshingCloudWatchLogHandler("/spool/warn", spool_dir=missing)
        logger = logging.getLogger("app")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.isEnabledFor(logging.INFO)  # cached: logger.info() needs no lock of logging's
        with logging._lock:  # as dictConfig holds it while it closes the old handlers
            emitter = threading.Thread(target=logger.info, args=("first",), daemon=True)
            emitter.start()  # opens the spool, which cannot be used: a warning
            emitter.join(1.0)
            got = handler.lock.acquire(timeout=5)
            if got:
                handler.lock.release()
        print("dictConfig took the handler's lock:", got)
        emitter.join(5)
        handler.flush(timeout=10)
        print("delivered", handler.stats.delivered)
        """
    )
    done = run_python(aws, "-c", script)
    assert done.returncode == 0, done.stderr
    assert "dictConfig took the handler's lock: True" in done.stdout
    assert "delivered 1" in done.stdout
    assert "cannot be used" in done.stderr  # said all the same, once the lock was free


def test_the_cli_deliver_ends_within_its_timeout_against_a_put_that_hangs(
    aws: FakeAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_owner(tmp_path, "/spool/cli-hang", [("s", now_ms(), "waiting")])
    aws.injector.add_fault(Fault("", action="PutLogEvents", delay=30))
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/spool/cli-hang"]
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        assert main([*args, "--timeout", "2"]) == EXIT_DEMO_LOST
        elapsed = time.monotonic() - started
        for thread in threading.enumerate():  # the put given up on ends by its read timeout
            if thread.name.startswith("watchtower-refresh-"):
                thread.join(timeout=10)
    assert elapsed < 6.0  # not --timeout and then flush_timeout (10 s) more
    assert "INCOMPLETE" in capsys.readouterr().out
    assert spooled(tmp_path)  # still on disk for a later try
