"""Drop markers, read back from the fake service: one per episode, with its count, times
and reasons, in the stream that lost the records."""

from __future__ import annotations

import datetime
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, logger_for
from watchtower_refresh import LocalTimeFormatter, RefreshingCloudWatchLogHandler
from watchtower_refresh._core.events import Event
from watchtower_refresh._core.markers import Gap, Gaps, Style, render, stamp
from watchtower_refresh.testing import FakeAWS, Fault

PREFIX = "watchtower-refresh:"
Handler = Callable[..., RefreshingCloudWatchLogHandler]


class Stamper(logging.Filter):
    """Gives each record a known time, 4 ms apart from ``start``, and remembers it (ms)."""

    def __init__(self, start: datetime.datetime) -> None:
        super().__init__()
        self.start = start.timestamp()
        self.times: list[int] = []

    def filter(self, record: logging.LogRecord) -> bool:
        record.created = self.start + len(self.times) * 0.004
        self.times.append(int(record.created * 1000))  # as the handler reads it
        return True


@pytest.fixture
def events(aws: FakeAWS) -> Callable[[str], list[dict[str, Any]]]:
    """Every event of a group: its stream, timestamp and message, oldest first."""
    client: Any = boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)

    def read(group: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in client.get_paginator("filter_log_events").paginate(logGroupName=group):
            found.extend(page.get("events", []))
        return sorted(found, key=lambda e: (e["timestamp"], e["message"]))

    return read


def markers(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in found if PREFIX in e["message"]]  # the text, or JSON that holds it


def clock(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


@pytest.fixture
def outage(aws: FakeAWS) -> Iterator[Fault]:
    fault = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    yield fault
    aws.injector.remove_fault(fault)


def log_through_outage(
    aws: FakeAWS, outage: Fault, handler: RefreshingCloudWatchLogHandler, records: int
) -> Stamper:
    """Log ``records`` while puts fail, then end the outage and flush."""
    stamper = Stamper(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5))
    handler.addFilter(stamper)
    logger = logger_for(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the queue's warning: tested in test_handler
        for n in range(records):
            logger.info("line %d", n)
    aws.injector.remove_fault(outage)
    assert handler.flush(timeout=30)
    return stamper


def test_an_outage_against_a_small_queue_leaves_one_marker(
    aws: FakeAWS, outage: Fault, make_handler: Handler, events: Any
) -> None:
    handler = make_handler("/mark/outage", log_stream_name="s", queue_max_events=50)
    stamper = log_through_outage(aws, outage, handler, 200)
    found = events("/mark/outage")
    [marker] = markers(found)
    lost = stamper.times[50:]  # the queue keeps the oldest 50
    assert marker["message"] == (
        f"{PREFIX} 150 records dropped between {clock(lost[0])} and {clock(lost[-1])} UTC "
        "(queue_full 150)"
    )
    assert marker["logStreamName"] == "s"
    assert marker["timestamp"] == lost[-1]  # where the hole ends
    assert sorted(e["message"] for e in found if e is not marker) == sorted(
        f"line {n}" for n in range(50)
    )
    stats = handler.stats
    assert (stats.received, stats.delivered, stats.dropped) == (200, 50, {"queue_full": 150})
    # A later put to the stream writes no second marker for the same episode.
    logger_for(handler).info("after")
    assert handler.flush(timeout=10)
    assert len(markers(events("/mark/outage"))) == 1
    assert handler.stats.received == 201


def test_the_marker_is_json_when_the_formatter_writes_json(
    aws: FakeAWS, outage: Fault, make_handler: Handler, events: Any
) -> None:
    handler = make_handler("/mark/json", log_stream_name="s", queue_max_events=10)
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    handler.setFormatter(LocalTimeFormatter(as_json=True, tz=tokyo))
    stamper = log_through_outage(aws, outage, handler, 30)
    found = events("/mark/json")
    [marker] = markers(found)
    lost = stamper.times[10:]
    fields = json.loads(marker["message"])
    first = datetime.datetime.fromtimestamp(lost[0] / 1000, tokyo)
    last = datetime.datetime.fromtimestamp(lost[-1] / 1000, tokyo)
    assert fields == {
        "timestamp": last.isoformat(timespec="milliseconds"),
        "level": "WARNING",
        "logger": "watchtower_refresh",
        "message": (
            f"{PREFIX} 20 records dropped between {first:%H:%M:%S}.{first.microsecond // 1000:03d}"
            f" and {last:%H:%M:%S}.{last.microsecond // 1000:03d} +09:00 (queue_full 20)"
        ),
        "dropped": 20,
        "first_dropped": first.isoformat(timespec="milliseconds"),
        "last_dropped": last.isoformat(timespec="milliseconds"),
        "dropped_by_reason": {"queue_full": 20},
    }
    records = [json.loads(e["message"]) for e in found if e is not marker]
    assert len(records) == 10
    assert set(records[0]) >= {"timestamp", "level", "logger", "message"}  # read alike


@pytest.mark.parametrize("off", [False, "false"])
def test_drop_markers_off_writes_none(
    aws: FakeAWS, outage: Fault, make_handler: Handler, events: Any, off: object
) -> None:
    handler = make_handler("/mark/off", log_stream_name="s", queue_max_events=10, drop_markers=off)
    log_through_outage(aws, outage, handler, 30)
    found = events("/mark/off")
    assert len(found) == 10
    assert markers(found) == []
    assert handler.stats.dropped == {"queue_full": 20}


def test_a_marker_whose_put_fails_is_written_once_later(
    aws: FakeAWS, make_handler: Handler, events: Any
) -> None:
    handler = make_handler("/mark/retry", log_stream_name="s", use_queues=False)
    put = handler._put

    def denied_after(client: Any, stream: str, batch: Sequence[Event]) -> Any:
        answer = put(client, stream, batch)
        if batch[0][2] == "second":  # the marker's own put, right after this one, fails
            aws.injector.add_fault(Fault("AccessDeniedException", action="PutLogEvents", times=1))
        return answer

    handler._put = denied_after  # type: ignore[method-assign]
    logger = logger_for(handler)
    aws.injector.add_fault(Fault("AccessDeniedException", action="PutLogEvents", times=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.info("first")  # denied: dropped
        logger.info("second")  # delivered; its marker is denied
        logger.info("third")  # delivered, and the marker with it
    assert aws.injector.counts["AccessDeniedException"] == 2  # the record's put, the marker's
    found = events("/mark/retry")
    [marker] = markers(found)
    assert marker["message"].startswith(f"{PREFIX} 1 record dropped at ")
    assert marker["message"].endswith(" UTC (AccessDeniedException 1)")
    assert sorted(e["message"] for e in found if e is not marker) == ["second", "third"]
    stats = handler.stats
    assert (stats.received, stats.delivered) == (3, 2)
    assert stats.dropped == {"AccessDeniedException": 1}


@pytest.mark.parametrize("use_queues", [True, False])
def test_close_writes_the_marker_of_a_stream_that_got_no_later_record(
    aws: FakeAWS, make_handler: Handler, events: Any, use_queues: bool
) -> None:
    handler = make_handler("/mark/close", log_stream_name="{logger_name}", use_queues=use_queues)
    handler.setFormatter(logging.Formatter("%(message)s"))
    last, other = logger_for(handler, "last"), logger_for(handler, "other")
    aws.injector.add_fault(Fault("InvalidParameterException", action="PutLogEvents", times=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last.info("refused")
        assert handler.flush(timeout=10)
        other.info("accepted")
        assert handler.flush(timeout=10)
    assert markers(events("/mark/close")) == []  # no put to its stream has succeeded since
    handler.close()
    [marker] = markers(events("/mark/close"))
    assert marker["logStreamName"] == last.name
    assert marker["message"].endswith("(InvalidParameterException 1)")
    assert (handler.stats.received, handler.stats.delivered) == (2, 1)


def test_close_tries_no_marker_against_a_service_that_does_not_answer(
    aws: FakeAWS, make_handler: Handler
) -> None:
    handler = make_handler("/mark/down", log_stream_name="s", use_queues=False)
    aws.injector.add_fault(Fault("AccessDeniedException", action="PutLogEvents"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger_for(handler).info("refused")
    handler.close()
    handler.close()  # as at exit: our hook, then logging.shutdown()
    assert aws.injector.counts["PutLogEvents"] == 1  # the record's put only
    assert handler.stats.dropped == {"AccessDeniedException": 1}


def test_each_stream_gets_the_marker_of_its_own_loss(
    aws: FakeAWS, make_handler: Handler, events: Any
) -> None:
    handler = make_handler("/mark/streams", log_stream_name="{logger_name}")
    handler.setFormatter(logging.Formatter("%(message)s"))
    quiet, noisy = logger_for(handler, "quiet"), logger_for(handler, "noisy")
    broken = logging.Formatter("%(message)s")

    def fails_for_noisy(record: logging.LogRecord) -> str:
        if record.name == noisy.name and record.getMessage() == "cannot format":
            raise ValueError(record.getMessage())
        return broken.format(record)

    handler.formatter.format = fails_for_noisy  # type: ignore[method-assign,union-attr]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging, "raiseExceptions", False)  # handleError stays quiet
        quiet.info("fine")
        noisy.info("cannot format")
        noisy.info("cannot format")
        noisy.info("formatted")
        assert handler.flush(timeout=10)
    found = events("/mark/streams")
    [marker] = markers(found)
    assert marker["logStreamName"] == noisy.name
    assert "2 records dropped" in marker["message"]
    assert marker["message"].endswith("(format_error 2)")
    assert sorted(e["message"] for e in found if e is not marker) == ["fine", "formatted"]
    assert handler.stats.dropped == {"format_error": 2}


def test_deliberate_drops_leave_no_marker(aws: FakeAWS, make_handler: Handler, events: Any) -> None:
    handler = make_handler("/mark/empty", log_stream_name="s")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logger_for(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.info("")
        logger.info("kept")
        assert handler.flush(timeout=10)
    assert [e["message"] for e in events("/mark/empty")] == ["kept"]
    assert handler.stats.dropped == {"empty": 1}


# --------------------------------------------------------------------------- the event itself


def test_a_marker_is_stamped_where_the_service_accepts_it() -> None:
    now = 1_800_000_000_000
    gap = Gap(now - 5000, now - 1000)
    assert stamp(gap, now) == now - 1000  # where the hole ends
    ahead = Gap(now, now + 3 * 3600 * 1000)  # records refused as too new
    assert stamp(ahead, now) == now
    old = Gap(now - 20 * 86_400_000, now - 15 * 86_400_000)  # older than 14 days
    assert now - 14 * 86_400_000 < stamp(old, now) < now
    assert now - 86_400_000 < stamp(Gap(now - 3 * 86_400_000, now - 2 * 86_400_000), now, 1)


def test_the_text_names_the_date_of_times_on_another_day() -> None:
    day = 86_400_000
    now = 1_800_000_000_000 - 1_800_000_000_000 % day + 3_600_000  # 01:00 UTC
    gap = Gap(now - 2 * 3_600_000, now - 1000)
    gap.reasons.update({"queue_full": 3, "InvalidParameterException": 4})
    text = render(gap, now - 1000)
    yesterday = datetime.datetime.fromtimestamp((now - day) / 1000, datetime.timezone.utc)
    assert text == (
        f"{PREFIX} 7 records dropped between {yesterday:%Y-%m-%d} 23:00:00.000 and "
        "00:59:59.000 UTC (InvalidParameterException 4, queue_full 3)"
    )


def test_refusals_by_time_are_placed_by_their_index_in_the_batch() -> None:
    gaps = Gaps()
    batch: list[Event] = [("s", ms, f"m{ms}", 3) for ms in range(100, 110)]
    # As count_rejected reads rejectedLogEventsInfo: expired first, then too old; too new last.
    gaps.settled(
        batch, delivered=5, rejected={"expired": 1, "too_old": 2, "too_new": 2}, reason=None, rest=0
    )
    gap = gaps.take("s")
    assert gap is not None
    assert (gap.first_ms, gap.last_ms, dict(gap.reasons)) == (
        100,
        109,
        {"expired": 1, "too_old": 2, "too_new": 2},
    )
    assert gaps.take("s") is None  # taken: the next loss opens a new episode
    kept = Gap(1, 2)
    kept.reasons["queue_full"] = 1
    gaps.add("s", 5, 5, "timeout", 1)  # lost while the marker's put was failing
    gaps.give_back("s", kept)
    again = gaps.take("s")
    assert again is not None
    assert (again.first_ms, again.last_ms, again.count) == (1, 5, 2)


def test_records_kept_in_a_spool_or_given_up_on_purpose_open_no_episode() -> None:
    gaps = Gaps()
    spooled: Event = ("s", 1, "on disk", 7, 42)
    memory: Event = ("s", 2, "memory", 6)
    gaps.add_events([spooled, memory], "AccessDeniedException")  # fixable: the spool keeps it
    gaps.add_events([spooled], "shutdown")
    gaps.add_events([memory], "empty")
    gap = gaps.take("s")
    assert gap is not None
    assert (gap.first_ms, gap.last_ms, dict(gap.reasons)) == (2, 2, {"AccessDeniedException": 1})
    assert "s" not in gaps


def test_the_json_timestamp_follows_the_formatters_datefmt() -> None:
    gap = Gap(1_800_000_000_000, 1_800_000_000_000)
    gap.reasons["queue_full"] = 1
    utc = datetime.timezone.utc
    fields = json.loads(render(gap, 1_800_000_000_000, Style(True, utc, "%Y-%m-%d %H:%M:%S")))
    assert fields["timestamp"] == "2027-01-15 08:00:00"
    assert fields["first_dropped"] == fields["last_dropped"] == "2027-01-15T08:00:00.000+00:00"
    assert fields["message"] == f"{PREFIX} 1 record dropped at 08:00:00.000 UTC (queue_full 1)"
