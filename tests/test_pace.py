"""The process's pace of puts: off until throttled, then halved and grown back as TCP does."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import logger_for
from watchtower_refresh._delivery.pace import MIN_RATE, PACE, QUIET, START_RATE, Pace
from watchtower_refresh.testing import FakeAWS, Fault, Quota

Read = Callable[[str], list[str]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_off_until_throttled_then_every_put_waits_its_slot(clock: Clock) -> None:
    pace = Pace(clock)
    assert [pace.reserve()[1] for _ in range(50)] == [0.0] * 50  # off: nothing waits
    assert not pace.on
    turn, _ = pace.reserve()
    pace.throttled(turn)
    assert pace.rate is not None
    # 51 puts in this second, halved; the throttled put's resend waits one slot.
    assert pace.rate == pytest.approx(51 * 0.5, rel=0.05)
    slot = 1.0 / pace.rate
    waits = [pace.reserve()[1] for _ in range(4)]
    assert waits == pytest.approx([slot, 2 * slot, 3 * slot, 4 * slot])


def test_one_halving_a_round_and_never_below_the_floor(clock: Clock) -> None:
    pace = Pace(clock)
    turns = [pace.reserve()[0] for _ in range(8)]  # eight puts in flight, all throttled
    for turn in turns:
        pace.throttled(turn)
    assert pace.rate == START_RATE * 0.5  # a quiet process: from START_RATE, once
    for _ in range(20):  # each resend reserved after a halving and throttled again
        turn, _ = pace.reserve()
        pace.throttled(turn)
    assert pace.rate == MIN_RATE


def test_accepted_puts_add_back_about_one_put_a_second_each_second(clock: Clock) -> None:
    pace = Pace(clock)
    pace.throttled(pace.reserve()[0])
    assert pace.rate == 5.0
    for _ in range(50):  # ten seconds of puts at about 5 a second
        turn, wait = pace.reserve()
        clock.now += wait
        pace.accepted(turn)
    assert 5.0 + 5 < pace.rate < 5.0 + 12


def test_off_again_after_a_quiet_spell(clock: Clock) -> None:
    pace = Pace(clock)
    pace.throttled(pace.reserve()[0])
    clock.now += QUIET
    turn, _ = pace.reserve()
    pace.accepted(turn)
    assert not pace.on
    assert pace.reserve()[1] == 0.0


def test_a_forked_child_starts_unpaced(clock: Clock) -> None:
    pace = Pace(clock)
    turn, _ = pace.reserve()
    pace.throttled(turn)
    pace.reset()  # what at_fork runs in the child
    assert not pace.on
    pace.throttled(turn)  # an answer to a put of the parent's: not ours to count
    assert not pace.on


# ---------------------------------------------------------------- handlers through the fake AWS


def puts_to(captured: list[Any], group: str) -> list[int]:
    """The number of events of each PutLogEvents request to ``group``, throttled or not."""
    bodies = (json.loads(request.body) for request in captured)
    return [len(body["logEvents"]) for body in bodies if body["logGroupName"] == group]


def log_for(logger: logging.Logger, seconds: float, every: float = 0.005) -> list[str]:
    """Log a numbered record every ``every`` seconds for ``seconds`` (wall clock)."""
    sent: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sent.append(f"record {len(sent)}")
        logger.info(sent[-1])
        time.sleep(every)
    return sent


def test_a_throttled_handler_sends_fewer_fuller_puts_and_loses_nothing(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    captured = aws.injector.capture("PutLogEvents")
    quota = aws.injector.add_quota(Quota(4, burst=2))
    handler = make_handler("/pace/throttled", send_interval=0.01)
    sent = log_for(logger_for(handler), seconds=3.0)
    assert handler.flush(timeout=60)
    assert sorted(messages("/pace/throttled"), key=lambda m: int(m.split()[1])) == sent
    assert handler.stats.dropped == {}
    # A put every 10 ms would be ~300 puts, nearly all throttled: paced, the handler
    # settles near the quota's 4 a second, each put carrying what gathered meanwhile.
    sizes = puts_to(captured, "/pace/throttled")
    assert quota.refused <= quota.allowed
    assert len(sizes) < 60
    assert max(sizes) >= 20


def test_one_throttled_handler_slows_every_handler_of_the_process(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    captured = aws.injector.capture("PutLogEvents")
    first = make_handler("/pace/first")
    second = make_handler("/pace/second", send_interval=0.01)
    aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents", times=1))
    logger_for(first, "first").info("throttled once")
    assert first.flush(timeout=30)
    assert aws.injector.counts["ThrottlingException"] == 1
    # The second handler was never throttled itself; it shares the process's budget, now
    # a few puts a second, instead of a put every 10 ms.
    sent = log_for(logger_for(second, "second"), seconds=1.0)
    assert second.flush(timeout=30)
    assert messages("/pace/second") == sent
    sizes = puts_to(captured, "/pace/second")
    assert len(sizes) <= 15
    assert sum(sizes) == len(sent)


def test_close_meets_its_deadline_while_every_put_is_throttled(
    aws: FakeAWS, make_handler: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents"))
    handler = make_handler("/pace/close", flush_timeout=1.0)
    logger = logger_for(handler)
    for n in range(50):
        logger.info("record %d", n)
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 5  # a hang guard: the bound is flush_timeout
    stats = handler.stats
    assert (stats.delivered, stats.dropped, stats.queued) == (0, {"shutdown": 50}, 0)
    assert "50 records" in capfd.readouterr().err


def test_close_sends_what_the_pace_would_hold_past_its_deadline(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    for _ in range(12):  # throttled again and again: the process is down to its floor
        PACE.throttled(PACE.reserve()[0])
    assert PACE.rate == MIN_RATE
    handler = make_handler("/pace/floor", log_stream_name="{logger_name}", flush_timeout=4.0)
    sent = []
    for stream in range(6):  # six puts at 0.5 a second: 12 s, three times the deadline
        logger = logging.getLogger(f"pace.floor.s{stream}")
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
        sent.append(f"stream {stream}")
        logger.info(sent[-1])
    handler.close()
    # Whatever had not gone a second (PUT_ROOM) before the deadline went then: none lost.
    assert sorted(messages("/pace/floor")) == sent
    assert handler.stats.dropped == {}
