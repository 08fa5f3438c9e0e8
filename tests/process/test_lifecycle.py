"""Process-wide phases, in this process: exit, finalization, forks, and flushing them all."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import logger_for
from watchtower_refresh._process import lifecycle
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]


@pytest.fixture
def exit_phase(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Run our exit hook in this process, and put the process back afterwards."""
    monkeypatch.setattr(lifecycle, "_exit_started", None)
    monkeypatch.setattr(lifecycle, "_exit_closed", None)
    return lifecycle._at_exit


def test_the_exit_hook_delivers_then_later_records_are_sent_from_the_caller(
    aws: FakeAWS, make_handler: Any, messages: Read, exit_phase: Callable[[], None]
) -> None:
    handler = make_handler("/proc/exit", send_interval=3600)
    logger = logger_for(handler)
    logger.info("queued at exit")
    exit_phase()
    assert lifecycle.exiting()
    assert messages("/proc/exit") == ["queued at exit"]
    logger.info("from a later atexit hook")  # no thread starts now: sent from here
    assert messages("/proc/exit") == ["queued at exit", "from a later atexit hook"]
    assert handler.threads == []
    assert handler.stats.delivered == 2


def test_during_finalization_records_are_counted_and_reported_not_sent(
    aws: FakeAWS,
    make_handler: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = make_handler("/proc/final")
    monkeypatch.setattr(sys, "is_finalizing", lambda: True)
    logger = logger_for(handler)
    logger.info("too late")
    logger.info("later still")
    monkeypatch.undo()
    assert handler.stats.dropped == {"shutdown": 2}
    assert sum(aws.injector.counts.values()) == 0
    err = capsys.readouterr().err
    assert err.count("while the interpreter is finalizing") == 1


def test_flush_all_shares_one_deadline_across_handlers(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        stuck = make_handler(
            "/proc/stuck",
            send_interval=3600,
            flush_timeout=1,
            endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
        )
        healthy = make_handler("/proc/healthy", send_interval=3600)
        logger_for(stuck).info("stuck")
        logger_for(healthy).info("fine")
        # The stuck one is waited for first; the healthy one was asked at the same moment.
        assert lifecycle.flush_all(1.5, [stuck, healthy]) is False
        assert healthy.stats.delivered == 1
        assert messages("/proc/healthy") == ["fine"]
    finally:
        silent.close()
    stuck.close()  # its put fails now: no sender of it outlives the test
    deadline = time.monotonic() + 30
    while stuck.threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stuck.threads == []


def test_a_forked_child_starts_afresh(aws: FakeAWS, make_handler: Any, messages: Read) -> None:
    handler = make_handler("/proc/fork")
    logger = logger_for(handler)
    logger.info("parent")
    assert handler.flush(timeout=10)
    handler.close()  # a real child has none of the parent's threads
    handler.after_fork_in_child()  # what os.fork's hook does in the child
    assert handler.stats.delivered == 0
    logger.info("child")
    assert handler.flush(timeout=10)
    assert sorted(messages("/proc/fork")) == ["child", "parent"]


def test_fork_hooks_run_in_a_defined_order_and_one_that_fails_stops_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(lifecycle, "_before_fork", [])
    monkeypatch.setattr(lifecycle, "_after_fork_in_child", [])

    def failing() -> None:
        ran.append("failing")
        raise OSError("no such file")

    lifecycle.at_fork(before=lambda: ran.append("before 1"), after_in_child=failing)
    lifecycle.at_fork(before=lambda: ran.append("before 2"))
    lifecycle.at_fork(after_in_child=lambda: ran.append("child 2"))
    lifecycle._run(reversed(lifecycle._before_fork))
    lifecycle._run(list(lifecycle._after_fork_in_child))
    assert ran == ["before 2", "before 1", "failing", "child 2"]
    err = capsys.readouterr().err
    assert err == "watchtower-refresh: a fork hook failed: OSError('no such file')\n"
