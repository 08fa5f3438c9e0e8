"""The handler against moto on loopback: delivery, refresh, faults, limits, threads, fork."""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
import os
import subprocess
import textwrap
import threading
import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import watchtower

import watchtower_refresh._delivery.scheduler
from tests.conftest import REGION, ROLE_ARN, log_from_threads, logger_for, run_python
from watchtower_refresh import (
    ConfigurationError,
    RefreshingCloudWatchLogHandler,
    WatchtowerRefreshWarning,
    refreshable_session,
)
from watchtower_refresh._core.events import MAX_BATCH_BYTES
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault

Read = Callable[[str], list[str]]
AHEAD = datetime.timedelta(seconds=800)


def sender_threads() -> int:
    return sum(t.name == "watchtower-refresh-sender" for t in threading.enumerate())


# --------------------------------------------------------------------------- construction


def test_is_a_watchtower_handler_with_its_attributes() -> None:
    handler = RefreshingCloudWatchLogHandler("grp", log_stream_name="{logger_name}")
    assert isinstance(handler, watchtower.CloudWatchLogHandler)
    assert handler.log_group_name == "grp"
    assert handler.log_stream_name == "{logger_name}"
    assert "grp" in repr(handler)


def test_constructor_makes_no_request(aws: FakeAWS) -> None:
    handler = RefreshingCloudWatchLogHandler("quiet", role_arn=ROLE_ARN, log_group_retention_days=7)
    assert sum(aws.injector.counts.values()) == 0
    assert handler.stats.queued == 0
    handler.close()
    assert sum(aws.injector.counts.values()) == 0


def test_constructor_succeeds_without_region_or_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    handler = RefreshingCloudWatchLogHandler("grp", role_arn=ROLE_ARN)
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="no AWS region is configured.*AWS_REGION"):
        logger.info("goes nowhere")
        assert handler.flush(timeout=10)
    assert handler.stats.dropped == {"NoRegionError": 1}
    handler.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"log_group_name": "bad name!"}, "log_group_name 'bad name!' is invalid"),
        ({"log_group_name": ""}, "log_group_name '' is invalid"),
        ({"log_stream_name": "{hostname}"}, "unknown fields \\['hostname'\\]"),
        ({"log_stream_name": "{unclosed"}, "not a valid template"),
        ({"send_interval": "soon"}, "send_interval must be a number"),
        ({"max_batch_count": 10_001}, "max_batch_count must be a whole number"),
        ({"max_batch_size": "2000000"}, "at most 1048576"),
        ({"log_group_retention_days": 8}, "must be one of 1, 3, 5, 7, 14"),
        ({"use_queues": "maybe"}, "use_queues must be true or false"),
        ({"duration_seconds": 600, "role_arn": ROLE_ARN}, "duration_seconds .* at least 900"),
        ({"role_arn": "arn:aws:iam::12:role/x"}, "role_arn .* is invalid"),
        ({"role_session_name": "x"}, "role_session_name only apply with role_arn"),
        ({"session_factory": "no.such.module:fn"}, "cannot be imported"),
        (
            {"session_factory": "boto3:Session", "role_arn": ROLE_ARN},
            "session_factory excludes role_arn",
        ),
        ({"boto3_client": object(), "profile_name": "p"}, "boto3_client excludes profile_name"),
        ({"log_group": "a", "log_group_name": "b"}, "give log_group_name or its older name"),
        ({"log_group_tags": "a=1,b"}, "key=value pairs"),
    ],
)
def test_invalid_options_fail_at_configuration(options: dict[str, Any], match: str) -> None:
    options.setdefault("log_group_name", "grp")
    with pytest.raises(ConfigurationError, match=match):
        RefreshingCloudWatchLogHandler(**options)


def test_every_option_accepts_its_text_form() -> None:
    handler = RefreshingCloudWatchLogHandler(
        "grp",
        use_queues="false",
        send_interval="2.5",
        max_batch_size="500000",
        max_batch_count="100",
        create_log_group="no",
        create_log_stream="yes",
        log_group_tags="team=platform, env=prod",
        log_group_retention_days="30",
        max_message_size="4096",
        role_arn=ROLE_ARN,
        duration_seconds="900",
        queue_max_events="10",
        queue_max_bytes="100000",
        flush_timeout="3",
        json_serialize_default="builtins:str",
        level="INFO",
    )
    assert handler.use_queues is False
    assert handler.send_interval == 2.5
    assert (handler.max_batch_size, handler.max_batch_count) == (500_000, 100)
    assert (handler.create_log_group, handler.create_log_stream) == (False, True)
    assert handler.log_group_tags == {"team": "platform", "env": "prod"}
    assert handler.log_group_retention_days == 30
    assert handler.json_serialize_default is str
    assert handler.level == logging.INFO


def test_deprecated_watchtower_aliases_still_work() -> None:
    with pytest.warns(DeprecationWarning, match="log_group is deprecated"):
        handler = RefreshingCloudWatchLogHandler(log_group="old-name")
    assert handler.log_group_name == "old-name"


# --------------------------------------------------------------------------- delivery


def test_dict_config_with_role_arn_delivers(aws: FakeAWS, messages: Read) -> None:
    config = json.loads(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "cloudwatch": {
                        "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                        "log_group_name": "/svc/orders",
                        "log_stream_name": "{logger_name}",
                        "role_arn": ROLE_ARN,
                        "duration_seconds": "900",
                        "send_interval": "0.1",
                    }
                },
                "loggers": {"orders": {"handlers": ["cloudwatch"], "level": "INFO"}},
            }
        )
    )
    logging.config.dictConfig(config)
    logger = logging.getLogger("orders")
    logger.info("order %s placed", 42)
    logger.warning({"order": 43, "state": "late"})
    handler = logger.handlers[0]
    assert isinstance(handler, RefreshingCloudWatchLogHandler)
    handler.close()
    assert sorted(messages("/svc/orders")) == sorted(
        ["order 42 placed", '{"order": 43, "state": "late"}']
    )
    assert aws.injector.counts["AssumeRole"] == 1
    logger.handlers.clear()


def test_one_sender_thread_for_many_loggers_and_streams(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/many", log_stream_name="{logger_name}")
    for index in range(20):
        logger_for(handler, f"part{index}").info("from part %d", index)
    assert sender_threads() == 1
    assert handler.flush(timeout=10)
    streams = boto3.client("logs").describe_log_streams(logGroupName="/svc/many")["logStreams"]
    assert len(streams) == 20
    assert len(messages("/svc/many")) == 20


def test_stream_template_fields(aws: FakeAWS, make_handler: Any) -> None:
    handler = make_handler(
        "/svc/names", log_stream_name="{process_id}/{thread_name}/{strftime:%Y-%m-%d}"
    )
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
    handler.handle(record)
    assert handler.flush(timeout=10)
    day = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    streams = boto3.client("logs").describe_log_streams(logGroupName="/svc/names")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [f"{os.getpid()}/MainThread/{day:%Y-%m-%d}"]


def test_flush_waits_for_everything_queued_before_it(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/flush", send_interval=3600)
    logger = logger_for(handler)
    for index in range(100):
        logger.info("line %d", index)
    assert handler.stats.queued == 100
    assert handler.flush(timeout=10)
    assert handler.stats.delivered == 100
    assert len(messages("/svc/flush")) == 100


def test_flush_times_out_during_an_outage(aws: FakeAWS, make_handler: Any) -> None:
    aws.injector.add_fault(Fault("ServiceUnavailableException", action="PutLogEvents", status=503))
    # close() waits 2 s: long enough, on a busy machine too, for the first put's answer to
    # come back, so that it is the resend that gives up at the deadline, with its warning
    handler = make_handler("/svc/outage", flush_timeout=2)
    logger_for(handler).info("stuck for now")
    started = time.monotonic()
    assert handler.flush(timeout=0.3) is False
    assert time.monotonic() - started < 5
    with pytest.warns(WatchtowerRefreshWarning, match="gave up resending"):
        handler.close()
    assert handler.stats.dropped == {"shutdown": 1}


def test_close_is_idempotent_and_a_later_record_reopens(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/closed")
    logger = logger_for(handler)
    logger.info("before close")
    handler.close()
    handler.close()
    assert sender_threads() == 0
    logger.info("after close")
    assert handler.flush(timeout=10)
    handler.close()
    logger.info("after the second close")
    handler.close()
    assert messages("/svc/closed") == ["before close", "after close", "after the second close"]
    assert handler.stats.dropped == {}
    assert sender_threads() == 0


# --------------------------------------------------------------------------- credentials


def test_no_record_lost_across_expiries_the_client_did_not_see_coming(
    aws: FakeAWS, clock: FakeClock, make_handler: Any, messages: Read
) -> None:
    # AWS's clock runs 800 s ahead of ours, so the client believes each 900 s token has
    # 800 s more than it has: 950 s on, AWS says expired while the client sees 750 s left
    # and no reason to refresh. Each of the three expiries is met as an error.
    aws.injector.clock = lambda: clock() + AHEAD
    handler = make_handler(
        "/svc/expiry",
        session_factory=lambda: refreshable_session(
            ROLE_ARN, duration_seconds=900, region_name=REGION, clock=clock
        ),
    )
    logger = logger_for(handler)
    sent = []
    for round_ in range(4):
        for index in range(25):
            sent.append(f"round {round_} line {index}")
            logger.info(sent[-1])
        assert handler.flush(timeout=20)
        clock.advance(950)
    assert sorted(messages("/svc/expiry")) == sorted(sent)
    assert aws.injector.counts["ExpiredTokenException"] == 3
    assert handler.stats.credential_refreshes == 3
    assert handler.stats.dropped == {}
    assert aws.injector.counts["AssumeRole"] == 4


def test_900_second_credentials_assume_the_role_about_once_per_lifetime(
    aws: FakeAWS, clock: FakeClock, make_handler: Any, messages: Read
) -> None:
    aws.injector.clock = clock
    handler = make_handler(
        "/svc/hours",
        session_factory=lambda: refreshable_session(
            ROLE_ARN, duration_seconds=900, region_name=REGION, clock=clock
        ),
    )
    logger = logger_for(handler)
    minutes = 120
    for minute in range(minutes):
        logger.info("minute %d", minute)
        assert handler.flush(timeout=10)
        clock.advance(60)
    assert len(messages("/svc/hours")) == minutes
    # Refreshed when a quarter of 900 s is left: every 675 s, 10 or 11 times in 2 hours,
    # never letting a token expire; botocore's own windows would call STS every minute.
    assert 10 <= aws.injector.counts["AssumeRole"] <= 12
    assert aws.injector.counts["ExpiredTokenException"] == 0
    assert handler.stats.credential_refreshes == 0


def test_static_session_credentials_warn_once_and_drop_on_expiry(
    aws: FakeAWS, clock: FakeClock, make_handler: Any, messages: Read
) -> None:
    aws.injector.clock = clock
    answer = boto3.client("sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="once")
    keys = answer["Credentials"]

    def one_answer_session() -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
        )

    handler = make_handler("/svc/static", session_factory=one_answer_session)
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="carry a session token but cannot refresh"):
        logger.info("while the token lives")
        assert handler.flush(timeout=10)
    clock.advance(4000)
    with pytest.warns(WatchtowerRefreshWarning, match="ExpiredTokenException|expired"):
        logger.info("after it expired")
        assert handler.flush(timeout=10)
    assert messages("/svc/static") == ["while the token lives"]
    assert handler.stats.dropped == {"ExpiredTokenException": 1}


def test_assume_role_denied_is_reported_with_the_action(aws: FakeAWS, make_handler: Any) -> None:
    aws.injector.add_fault(Fault("AccessDenied", action="AssumeRole", status=403))
    handler = make_handler("/svc/denied-sts", role_arn=ROLE_ARN)
    with pytest.warns(WatchtowerRefreshWarning, match="AssumeRole was denied.*sts:AssumeRole"):
        logger_for(handler).info("x")
        assert handler.flush(timeout=10)
    assert handler.stats.dropped == {"AccessDenied": 1}


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "fault",
    [
        Fault("ThrottlingException", action="PutLogEvents", times=3),
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503, times=3),
        Fault("InternalFailure", action="PutLogEvents", status=500, times=2),
        Fault("ConnectionReset", action="PutLogEvents", times=2),
        Fault("ThrottlingException", action="CreateLogStream", times=2),
    ],
    ids=lambda fault: f"{fault.code}-{fault.action}",
)
def test_transient_failures_are_resent(
    aws: FakeAWS, make_handler: Any, messages: Read, fault: Fault
) -> None:
    aws.injector.add_fault(fault)
    handler = make_handler("/svc/transient")
    logger = logger_for(handler)
    for index in range(10):
        logger.info("line %d", index)
    assert handler.flush(timeout=30)
    assert sorted(messages("/svc/transient")) == sorted(f"line {i}" for i in range(10))
    assert handler.stats.retried >= 1
    assert handler.stats.dropped == {}


def test_access_denied_drops_with_one_warning_then_resumes(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    denial = aws.injector.add_fault(
        Fault(
            "AccessDeniedException",
            action="PutLogEvents",
            message="User: arn:aws:sts::123456789012:assumed-role/logger/x is not authorized "
            "to perform: logs:PutLogEvents on resource: arn:aws:logs:us-east-1:123456789012:"
            "log-group:/svc/denied:log-stream:s",
        )
    )
    handler = make_handler("/svc/denied", log_stream_name="s")
    logger = logger_for(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in range(3):
            logger.info("denied %d", batch)
            assert handler.flush(timeout=10)
    ours = [w for w in caught if issubclass(w.category, WatchtowerRefreshWarning)]
    assert len(ours) == 1
    assert "logs:PutLogEvents" in str(ours[0].message)
    assert "watchtower-refresh policy" in str(ours[0].message)
    assert aws.injector.counts["PutLogEvents"] == 3  # one try per batch: no spinning
    aws.injector.remove_fault(denial)
    logger.info("allowed again")
    assert handler.flush(timeout=10)
    [marker, allowed] = messages("/svc/denied")  # the marker's time is the hole's end
    assert marker.startswith("watchtower-refresh: 3 records dropped ")  # "between" or "at"
    assert marker.endswith(" UTC (AccessDeniedException 3)")
    assert allowed == "allowed again"
    assert handler.stats.dropped == {"AccessDeniedException": 3}
    assert handler.stats.delivered == 1


def test_queue_cap_drops_and_counts_with_one_warning(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    handler = make_handler("/svc/capped", queue_max_events=50)
    logger = logger_for(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(200):
            logger.info("line %d", index)
    assert [str(w.message) for w in caught if "queue" in str(w.message)] == [
        f"the queue of log group /svc/capped is full (50 records or {64 * 1024 * 1024} bytes): "
        "records are dropped and counted in stats.dropped['queue_full'] until it drains"
    ]
    assert handler.stats.queued == 50
    aws.injector.remove_fault(outage)
    assert handler.flush(timeout=30)
    got = messages("/svc/capped")
    lost = [m for m in got if m.startswith("watchtower-refresh: 150 records dropped ")]
    assert len(lost) == 1
    assert lost[0].endswith(" UTC (queue_full 150)")
    assert sorted(m for m in got if m not in lost) == sorted(f"line {i}" for i in range(50))
    assert handler.stats.dropped == {"queue_full": 150}


@pytest.mark.parametrize(
    ("message", "logged", "held"),
    [
        ("x" * 300_000, 5, 3),
        # emit() charges non-ASCII text 6 bytes a character until it is sized ("é" takes
        # 2): the cap still holds as many records as their real size allows, 5 of 200,026
        # bytes where 1 estimate would fit.
        ("é" * 100_000, 7, 5),
        # A lone surrogate is sent as a 6-byte escape: the estimate must not be below that.
        ("\udc80" * 100_000, 3, 1),
    ],
    ids=["ascii", "non-ascii", "lone-surrogates"],
)
def test_queue_byte_cap(
    aws: FakeAWS, make_handler: Any, message: str, logged: int, held: int
) -> None:
    aws.injector.add_fault(Fault("ServiceUnavailableException", action="PutLogEvents", status=503))
    handler = make_handler("/svc/bytes", queue_max_bytes=MAX_BATCH_BYTES, flush_timeout=0.1)
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="is full"):
        for _ in range(logged):
            logger.info(message)
    assert handler.stats.queued == held
    assert handler.stats.dropped == {"queue_full": 2}


def test_non_ascii_batches_are_cut_by_their_exact_size(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    seen = aws.injector.capture("PutLogEvents")
    handler = make_handler("/svc/full-batches", send_interval=10)
    logger = logger_for(handler)
    text = "é" * 1000  # 2,000 bytes, charged 6,000 until the sender sizes it
    for n in range(2000):
        logger.info("%04d %s", n, text)
    assert handler.flush(timeout=60)
    assert sorted(messages("/svc/full-batches")) == [f"{n:04d} {text}" for n in range(2000)]
    sizes = [
        sum(len(event["message"].encode()) + 26 for event in json.loads(put.body)["logEvents"])
        for put in seen
    ]
    assert max(sizes) <= MAX_BATCH_BYTES
    # Cut by the estimates, no batch would hold more than a third of a megabyte.
    assert max(sizes) > 0.75 * MAX_BATCH_BYTES


def test_a_full_batch_goes_at_once_after_text_that_estimates_overstated(
    aws: FakeAWS, make_handler: Any
) -> None:
    # Text the estimates overstated sixfold must not make the sender wait for a "full" batch
    # larger than the queue can hold: records would be refused until send_interval.
    handler = make_handler("/svc/ratio", queue_max_bytes=2 * MAX_BATCH_BYTES, send_interval=60)
    logger = logger_for(handler)
    logger.info("start")
    for _ in range(10):
        logger.info("é" + "x" * 1000)
    assert handler.flush(timeout=10)
    for _ in range(1500):  # 1.5 MB of ASCII: a full batch, under the 2 MiB cap
        logger.info("y" * 1000)
    deadline = time.monotonic() + 10
    while handler.stats.delivered < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    for _ in range(1500):
        logger.info("z" * 1000)
    assert handler.flush(timeout=30)
    assert handler.stats.dropped == {}
    assert handler.stats.delivered == 3011


# --------------------------------------------------------------------------- records


def test_large_messages_are_cut_with_a_marker(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/large", max_message_size=1000)
    logger_for(handler).info("é" * 2000)
    assert handler.flush(timeout=10)
    (message,) = messages("/svc/large")
    assert message.endswith(" [truncated: 4000 bytes in all]")
    assert len(message.encode()) <= 1000 - 26
    assert handler.stats.truncated == 1


def test_default_limit_is_the_service_one_megabyte(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/megabyte")
    logger = logger_for(handler)
    logger.info("a" * 600_000)  # longer than watchtower's 256 KB cut
    logger.info("b" * 2_000_000)
    assert handler.flush(timeout=30)
    sizes = sorted(len(m.encode()) for m in messages("/svc/megabyte"))
    assert sizes == [600_000, MAX_BATCH_BYTES - 26]
    assert handler.stats.truncated == 1


def test_bad_records_never_raise_and_are_counted(
    aws: FakeAWS, make_handler: Any, messages: Read, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = make_handler("/svc/bad")
    logger = logger_for(handler)
    logger.info("%d apples", "three")  # a broken %-format
    with pytest.warns(WatchtowerRefreshWarning, match="empty message"):
        logger.info("")
    logger.info("lone surrogate \udc80 kept")
    logger.info({"unserialisable": object()})
    assert handler.flush(timeout=10)
    got = messages("/svc/bad")
    assert "lone surrogate \\udc80 kept" in got
    assert any(m.startswith('{"unserialisable": "<object object') for m in got)
    assert handler.stats.dropped == {"format_error": 1, "empty": 1}
    assert "apples" in capsys.readouterr().err  # logging's handleError reported it


def test_rejected_events_are_counted(aws: FakeAWS, make_handler: Any) -> None:
    # AWS's answer for [old, old, fine, too new]; moto's indexes are off by one.
    info = {"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 3}
    aws.injector.add_fault(
        Fault("", action="PutLogEvents", times=1, answer={"rejectedLogEventsInfo": info})
    )
    handler = make_handler("/svc/rejected", send_interval=3600)
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="refused 3 of 4 events"):
        for index in range(4):
            logger.info("event %d", index)
        assert handler.flush(timeout=10)
    assert handler.stats.rejected == 3
    assert handler.stats.delivered == 1
    assert handler.stats.dropped == {"too_old": 2, "too_new": 1}


# --------------------------------------------------------------------------- threads


def test_no_record_lost_from_eight_threads_while_the_stream_is_created(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    aws.injector.add_fault(Fault("", action="CreateLogStream", delay=1.0, times=1))
    handler = make_handler("/svc/threads", log_stream_name="shared")
    logger = logger_for(handler)
    logger.info("first, which starts the sender")
    log_from_threads(logger, threads=8, records=250)
    assert handler.flush(timeout=30)
    got = messages("/svc/threads")
    assert len(got) == 1 + 8 * 250
    assert len(set(got)) == len(got)
    assert aws.injector.counts["CreateLogStream"] == 1


def test_use_queues_false_sends_in_the_callers_thread_and_refreshes(
    aws: FakeAWS, clock: FakeClock, messages: Read
) -> None:
    aws.injector.clock = lambda: clock() + AHEAD
    handler = RefreshingCloudWatchLogHandler(
        "/svc/sync",
        use_queues=False,
        session_factory=lambda: refreshable_session(ROLE_ARN, duration_seconds=900, clock=clock),
    )
    logger = logger_for(handler)
    logger.info("one")
    clock.advance(950)
    logger.info("two")
    assert sender_threads() == 0
    assert messages("/svc/sync") == ["one", "two"]
    assert handler.stats.credential_refreshes == 1
    handler.close()


# --------------------------------------------------------------------------- processes

_CHILD_SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    from watchtower_refresh import RefreshingCloudWatchLogHandler

    handler = RefreshingCloudWatchLogHandler(
        sys.argv[1], log_stream_name="{process_id}", role_arn=sys.argv[2], send_interval=60
    )
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("parent before fork")
    if sys.argv[3] == "fork":
        pid = os.fork()
        if pid == 0:
            logger.info("child %d", os.getpid())
            handler.close()
            os._exit(0 if handler.stats.delivered == 1 else 3)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            sys.exit("the child did not deliver its record")
        logger.info("parent after fork")
    # no close(): logging's exit hook must deliver what is queued
    """
)


_POOL_SCRIPT = textwrap.dedent(
    """
    import logging, multiprocessing, os, sys
    from watchtower_refresh import RefreshingCloudWatchLogHandler

    def work(n):
        logging.getLogger("app").info("child %d of pid %d", n, os.getpid())
        return n  # no close(): the child ends with os._exit

    if __name__ == "__main__":
        handler = RefreshingCloudWatchLogHandler(
            sys.argv[1], log_stream_name="{process_id}", role_arn=sys.argv[2], send_interval=60
        )
        logging.getLogger("app").addHandler(handler)
        logging.getLogger("app").setLevel(logging.INFO)
        context = multiprocessing.get_context("fork")
        children = [context.Process(target=work, args=(n,)) for n in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        handler.close()
    """
)


def test_multiprocessing_fork_children_deliver_without_close(
    aws: FakeAWS, messages: Read, tmp_path: Any
) -> None:
    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    result = run_python(aws, str(script), "/svc/multiprocessing", ROLE_ARN)
    assert result.returncode == 0, result.stderr
    got = sorted(m.split(" of pid")[0] for m in messages("/svc/multiprocessing"))
    assert got == ["child 0", "child 1", "child 2"]


def run_script(aws: FakeAWS, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(aws, "-c", _CHILD_SCRIPT, *args)


def test_pending_records_are_delivered_at_exit_without_close(aws: FakeAWS, messages: Read) -> None:
    result = run_script(aws, "/svc/exit", ROLE_ARN, "no-fork")
    assert result.returncode == 0, result.stderr
    assert messages("/svc/exit") == ["parent before fork"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_builds_its_own_client_and_delivers(aws: FakeAWS, messages: Read) -> None:
    result = run_script(aws, "/svc/fork", ROLE_ARN, "fork")
    assert result.returncode == 0, result.stderr
    got = messages("/svc/fork")
    child = [m for m in got if m.startswith("child ")]
    assert sorted(got) == sorted(["parent before fork", "parent after fork", *child])
    assert len(child) == 1
    assert aws.injector.counts["AssumeRole"] == 2  # one per process


# --------------------------------------------------------------------------- secrets


def test_no_secret_in_any_output(
    aws: FakeAWS,
    clock: FakeClock,
    make_handler: Any,
    messages: Read,
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws.injector.clock = lambda: clock() + AHEAD
    captured = io.StringIO()
    root = logging.getLogger()
    root.addHandler(logging.StreamHandler(captured))
    root.setLevel(logging.DEBUG)
    handler = make_handler(
        "/svc/secrets",
        session_factory=lambda: refreshable_session(ROLE_ARN, duration_seconds=900, clock=clock),
    )
    root.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for round_ in range(3):
            logging.getLogger("app").info("round %d", round_)
            assert handler.flush(timeout=20)
            clock.advance(950)
        aws.injector.add_fault(Fault("AccessDeniedException", action="PutLogEvents", times=1))
        logging.getLogger("app").info("denied")
        assert handler.flush(timeout=20)
    root.removeHandler(handler)
    handler.close()
    secrets = aws.injector.issued_secrets()
    assert len(secrets) == 3 * 3  # three AssumeRole answers
    out = capsys.readouterr()
    everything = "\n".join(
        [
            captured.getvalue(),
            out.out,
            out.err,
            repr(handler),
            repr(handler.stats),
            *(str(w.message) for w in caught),
            *messages("/svc/secrets"),
        ]
    )
    assert "Response body" in captured.getvalue()  # botocore did log the STS answers
    for secret in secrets:
        assert secret not in everything


# --------------------------------------------------------------------------- other sources


def test_no_credentials_is_one_actionable_warning(
    aws: FakeAWS, make_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    handler = make_handler("/svc/nocreds")
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="no AWS credentials were found"):
        logger.info("one")
        assert handler.flush(timeout=10)
    logger.info("two")  # same episode: counted, not warned again (-W error would raise)
    assert handler.flush(timeout=10)
    assert handler.stats.dropped == {"NoCredentialsError": 2}


def test_a_failing_session_factory_drops_the_batch_and_recovers(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    calls: list[int] = []

    def flaky() -> boto3.Session:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("vault unreachable")
        return boto3.Session()

    handler = make_handler("/svc/flaky", session_factory=flaky)
    logger = logger_for(handler)
    with pytest.warns(WatchtowerRefreshWarning, match="vault unreachable"):
        logger.info("lost with the factory")
        assert handler.flush(timeout=10)
    logger.info("delivered")
    assert handler.flush(timeout=10)
    [marker, delivered] = messages("/svc/flaky")
    assert marker.startswith("watchtower-refresh: 1 record dropped at ")
    assert marker.endswith(" UTC (RuntimeError 1)")
    assert delivered == "delivered"
    assert handler.stats.dropped == {"RuntimeError": 1}


def test_records_are_sent_from_the_caller_when_no_thread_can_start(
    aws: FakeAWS, make_handler: Any, messages: Read, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unstartable(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

    handler = make_handler("/svc/late")
    shutting_down = types.SimpleNamespace(**{**vars(threading), "Thread": Unstartable})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(watchtower_refresh._delivery.scheduler, "threading", shutting_down)
        logger_for(handler).info("logged during shutdown")
    assert messages("/svc/late") == ["logged during shutdown"]
    assert handler.stats.delivered == 1
    assert handler.stats.queued == 0


def test_events_outside_the_time_window_are_counted_not_sent(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/svc/window", send_interval=3600)
    now = time.time()
    for label, created in (("15 days old", now - 15 * 86400), ("3 h ahead", now + 3 * 3600)):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, label, None, None)
        record.created = created
        handler.handle(record)
    logger_for(handler).info("now")
    with pytest.warns(WatchtowerRefreshWarning, match="2 hours ahead: 2 were set aside"):
        assert handler.flush(timeout=10)
    assert messages("/svc/window") == ["now"]
    assert handler.stats.dropped == {"too_old": 1, "too_new": 1}
    assert handler.stats.rejected == 2
    assert handler.stats.delivered == 1


# --------------------------------------------------------------------------- drop-in


def test_a_patched_submit_batch_sees_every_batch_in_watchtowers_shape(
    aws: FakeAWS, make_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[dict[str, Any]], str]] = []

    def submit(self: Any, batch: list[dict[str, Any]], log_stream_name: str, **_: Any) -> None:
        seen.append((batch, log_stream_name))

    monkeypatch.setattr(watchtower.CloudWatchLogHandler, "_submit_batch", submit)
    handler = make_handler("/svc/patched", log_stream_name="fixed")
    logger_for(handler).info("one")
    assert handler.flush(timeout=10)
    assert len(seen) == 1
    batch, stream = seen[0]
    assert stream == "fixed"
    assert [event["message"] for event in batch] == ["one"]
    assert isinstance(batch[0]["timestamp"], int)
    assert handler.stats.delivered == 1
    assert aws.injector.counts["PutLogEvents"] == 0


def test_a_subclass_overriding_submit_batch_gets_the_batches(aws: FakeAWS, messages: Read) -> None:
    seen: list[str] = []

    class Counting(RefreshingCloudWatchLogHandler):
        def _submit_batch(self, batch: Any, log_stream_name: str, max_retries: int = 5) -> None:
            seen.extend(event["message"] for event in batch)

    handler = Counting("/svc/subclass", send_interval=0.05)
    logger_for(handler).info("mine")
    assert handler.flush(timeout=10)
    handler.close()
    assert seen == ["mine"]


def test_watchtowers_attributes_are_there_read_only(aws: FakeAWS, make_handler: Any) -> None:
    handler = make_handler("/svc/attrs", send_interval=3600)
    assert handler.sequence_tokens == {}
    assert handler.threads == []
    assert not handler.shutting_down
    logger = logger_for(handler)
    logger.info("waiting")
    logger.info("lone \udc80 escaped")  # sized by the sender: shown as it will be sent
    [(stream, waiting)] = handler.queues.items()
    assert stream.endswith(str(os.getpid()))
    assert [event["message"] for event in waiting] == ["waiting", "lone \\udc80 escaped"]
    assert [t.name for t in handler.threads] == ["watchtower-refresh-sender"]
    handler.close()
    assert getattr(handler, "shutting_down") is True  # noqa: B009  # mypy narrowed it above
    assert handler.queues == {}


def test_empty_messages_warn_with_watchtowers_words(make_handler: Any) -> None:
    handler = make_handler("/svc/empty")
    with pytest.warns(WatchtowerRefreshWarning) as caught:
        logger_for(handler).info("")
    # watchtower's own test compares the words for equality, and so does code built on it.
    assert [str(w.message) for w in caught] == [
        "Received empty message. Empty messages cannot be sent to CloudWatch Logs"
    ]
    assert isinstance(caught[0].message, watchtower.WatchtowerWarning)
    assert handler.stats.dropped == {"empty": 1}


def test_a_handler_refused_at_configuration_leaves_nothing_for_exit(aws: FakeAWS) -> None:
    script = (
        "from watchtower_refresh import RefreshingCloudWatchLogHandler\n"
        "try:\n"
        "    RefreshingCloudWatchLogHandler('/ok', send_interval='soon')\n"
        "except ValueError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = run_python(aws, "-c", script)
    assert done.returncode == 0
    assert done.stdout.startswith("refused: send_interval")
    assert done.stderr == ""
