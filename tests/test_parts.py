"""large_events="split": records over the event limit sent in parts, and joined back exactly."""

from __future__ import annotations

import json
import logging
import logging.config
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import logger_for, run_python
from watchtower_refresh import ConfigurationError, RefreshingCloudWatchLogHandler, join_parts
from watchtower_refresh._cli import main
from watchtower_refresh._config import logging_config
from watchtower_refresh._core.events import EVENT_OVERHEAD, MAX_EVENT_BYTES
from watchtower_refresh._core.parts import MARKER_PREFIX, split_message, split_size
from watchtower_refresh._spool import Spool
from watchtower_refresh.testing import FakeAWS, Fault

Read = Callable[[str], list[str]]
ASCII_3MB = "".join(f"{n:09d}\n" for n in range(300_000))  # 3,000,000 bytes, no two lines alike
WIDE = "日本語のテキスト😀é" * 60_000  # 2-, 3- and 4-byte characters, 1.8 MB of UTF-8


# --------------------------------------------------------------------------- parts


@given(
    text=st.text(min_size=1, max_size=3000),
    limit=st.integers(min_value=64, max_value=700),
)
def test_parts_fit_the_limit_and_join_back_exactly(text: str, limit: int) -> None:
    text = text.encode("utf-8", "backslashreplace").decode()  # valid UTF-8, as emit() sends
    size = len(text.encode())
    if size <= limit:
        text, size = text * (limit // size + 2), size * (limit // size + 2)
    parts = split_message(text, limit)
    assert len(parts) >= 2
    assert all(len(part.encode()) <= limit for part in parts)
    # What emit() charges is exactly what the parts cost in a batch.
    assert split_size(text, size, limit) + EVENT_OVERHEAD == sum(
        len(part.encode()) + EVENT_OVERHEAD for part in parts
    )
    assert join_parts(["before", *parts, "after"]) == ["before", text, "after"]


# A marker of a two-digit total leaves 65 bytes of 100 for text; of a three-digit one, 63,
# of which 62 hold whole two-byte characters.
@pytest.mark.parametrize(("text", "count"), [("x" * 5_000, 77), ("ü" * 20_000, 646)])
def test_markers_widen_with_the_number_of_parts(text: str, count: int) -> None:
    parts = split_message(text, 100)
    assert len(parts) == count
    width = len(str(count))
    assert parts[0].startswith(MARKER_PREFIX)
    assert f" {1:0{width}d}/{count}] " in parts[0]
    assert all(len(part.encode()) <= 100 for part in parts)
    assert split_size(text, len(text.encode()), 100) == sum(
        len(part.encode()) for part in parts
    ) + EVENT_OVERHEAD * (count - 1)
    assert join_parts(parts) == [text]


def test_join_leaves_incomplete_forged_and_ordinary_messages_as_they_were() -> None:
    parts = split_message("x" * 500, 100)
    assert join_parts(parts[1:]) == parts[1:]  # a part missing
    forged = [f"{MARKER_PREFIX}{'0' * 16} {n}/2] text" for n in (1, 2)]
    assert join_parts(forged) == forged  # looks like parts, but the id is not the text's
    ordinary = ["[wtr-split not a part", f"{MARKER_PREFIX}0123456789abcdef 1/1] one", ""]
    assert join_parts(ordinary) == ordinary


def test_join_keeps_one_of_each_part_sent_twice_and_each_record_logged_twice() -> None:
    first, second = split_message("a" * 500, 100), split_message("b" * 500, 100)
    again = first[:2]  # a record sent again after its process died after two parts
    assert join_parts([*first, *second, *again, *first]) == ["a" * 500, "b" * 500, "a" * 500]
    assert join_parts([*first, *again]) == ["a" * 500]


# --------------------------------------------------------------------------- options


def test_large_events_is_validated() -> None:
    for bad in ("cut", "", None, 1, "split,truncate"):
        with pytest.raises(ConfigurationError, match="large_events must be truncate or split"):
            RefreshingCloudWatchLogHandler("app", large_events=bad)  # type: ignore[arg-type]
    handler = RefreshingCloudWatchLogHandler("app", large_events=" Split ")
    assert handler.options.large_events == "split"
    handler.close()
    assert RefreshingCloudWatchLogHandler("app").options.large_events == "truncate"


def test_large_events_from_the_environment_and_dictconfig() -> None:
    config = logging_config(
        log_group="/svc/env", environ={"WATCHTOWER_REFRESH_LARGE_EVENTS": "split"}
    )
    assert config["handlers"]["cloudwatch"]["large_events"] == "split"
    with pytest.raises(ValueError, match="Unable to configure handler") as refused:
        logging.config.dictConfig(
            logging_config(log_group="/svc/env", environ={"WATCHTOWER_REFRESH_LARGE_EVENTS": "x"})
        )
    assert isinstance(refused.value.__cause__, ConfigurationError)
    assert "large_events must be truncate or split, not 'x'" in str(refused.value.__cause__)
    logging.config.dictConfig(
        {
            "version": 1,
            "handlers": {
                "cw": {
                    "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                    "log_group_name": "/svc/dict",
                    "large_events": "split",
                }
            },
            "root": {"handlers": ["cw"]},
        }
    )
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, RefreshingCloudWatchLogHandler)
    assert handler.options.large_events == "split"


# --------------------------------------------------------------------------- through the service


@pytest.mark.parametrize("message", [ASCII_3MB, WIDE], ids=["ascii-3MB", "multi-byte"])
def test_a_large_record_arrives_in_parts_that_join_back_exactly(
    aws: FakeAWS, make_handler: Any, messages: Read, message: str
) -> None:
    handler = make_handler("/split/large", large_events="split")
    logger = logger_for(handler)
    logger.info("before")
    logger.info(message)
    logger.info("after")
    assert handler.flush(timeout=60)
    found = messages("/split/large")
    assert len(found) > 3
    assert all(len(m.encode()) + EVENT_OVERHEAD <= MAX_EVENT_BYTES for m in found)
    assert join_parts(found) == ["before", message, "after"]
    stats = handler.stats
    assert (stats.received, stats.delivered, stats.truncated, stats.dropped) == (3, 3, 0, {})


def test_parts_that_fit_travel_in_one_put_with_the_records_timestamp(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    puts = aws.injector.capture("PutLogEvents")
    handler = make_handler("/split/one-put", large_events="split", max_message_size=1000)
    logger_for(handler).info("é" * 2000)  # 4,000 bytes: five parts
    assert handler.flush(timeout=10)
    (body,) = [json.loads(put.body) for put in puts]
    events = body["logEvents"]
    assert len(events) == 5
    assert len({event["timestamp"] for event in events}) == 1
    assert all(len(e["message"].encode()) <= 1000 - EVENT_OVERHEAD for e in events)
    assert join_parts(messages("/split/one-put")) == ["é" * 2000]
    assert handler.stats.delivered == 1


def test_truncate_is_the_default_and_unchanged(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/split/default", max_message_size=1000)
    logger_for(handler).info("é" * 2000)
    assert handler.flush(timeout=10)
    (message,) = messages("/split/default")
    assert message.endswith(" [truncated: 4000 bytes in all]")
    assert not message.startswith(MARKER_PREFIX)
    assert handler.stats.truncated == 1


def test_a_record_whose_later_put_fails_is_one_dropped_record(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    # The first put goes through; the second is refused for good.
    aws.injector.add_fault(Fault("", action="PutLogEvents", times=1))
    aws.injector.add_fault(Fault("InvalidParameterException", action="PutLogEvents", times=1))
    handler = make_handler("/split/partial", large_events="split")
    with pytest.warns(Warning, match="InvalidParameterException"):
        logger_for(handler).info(ASCII_3MB)
        assert handler.flush(timeout=30)
    stats = handler.stats
    assert (stats.received, stats.delivered) == (1, 0)
    assert stats.dropped == {"InvalidParameterException": 1}
    found = messages("/split/partial")
    assert len(found) == 1  # the first part only: join_parts shows it as it is
    assert join_parts(found) == found


def test_records_a_put_delivered_count_even_when_a_later_put_of_their_batch_fails(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    aws.injector.add_fault(Fault("", action="PutLogEvents", times=1))
    aws.injector.add_fault(Fault("InvalidParameterException", action="PutLogEvents", times=1))
    handler = make_handler(
        "/split/batch", large_events="split", max_message_size=1000, max_batch_count=5
    )
    logger = logger_for(handler)
    with pytest.warns(Warning, match="InvalidParameterException"):
        for n in range(3):
            logger.info("small %d", n)
        logger.info("z" * 5000)  # six parts: not in the first put of at most five events
        assert handler.flush(timeout=10)
    stats = handler.stats
    assert (stats.received, stats.delivered) == (4, 3)
    assert stats.dropped == {"InvalidParameterException": 1}
    assert messages("/split/batch") == ["small 0", "small 1", "small 2"]


def test_a_split_record_in_the_spool_survives_a_kill_and_is_replayed_whole(
    aws: FakeAWS, make_handler: Any, messages: Read, tmp_path: Path
) -> None:
    # The child's first put arrives; every later one fails until it is killed.
    aws.injector.add_fault(Fault("", action="PutLogEvents", times=1))
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    script = textwrap.dedent(
        f"""
        import logging, os, signal, time, warnings
        import boto3
        from watchtower_refresh import RefreshingCloudWatchLogHandler
        warnings.simplefilter("ignore")
        handler = RefreshingCloudWatchLogHandler(
            "/split/spool", spool_dir={str(tmp_path)!r}, large_events="split",
            send_interval=0.05,
        )
        logger = logging.getLogger("child")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.info("".join(f"{{n:09d}}\\n" for n in range(300_000)))
        client, arrived = boto3.client("logs"), []
        deadline = time.monotonic() + 60
        while not arrived and time.monotonic() < deadline:  # the first put, then die
            time.sleep(0.1)
            try:
                arrived = client.filter_log_events(logGroupName="/split/spool")["events"]
            except client.exceptions.ResourceNotFoundException:
                pass  # the group is not made yet
        print(len(arrived), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = run_python(aws, "-c", script)
    assert child.stdout.strip() == "1", child.stderr
    assert len(messages("/split/spool")) == 1  # one part arrived before the process died
    aws.injector.remove_fault(outage)
    handler = make_handler("/split/spool", spool_dir=str(tmp_path), large_events="split")
    assert handler.flush(timeout=60)
    assert join_parts(messages("/split/spool")) == [ASCII_3MB]
    stats = handler.stats
    assert (stats.replayed, stats.delivered, stats.dropped) == (1, 1, {})


def test_the_cli_delivers_a_split_record_a_dead_process_left(
    aws: FakeAWS, messages: Read, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool.open(tmp_path, "/split/cli")
    assert spool is not None
    assert spool.append("web-1", int(time.time() * 1000), WIDE) is not None
    spool.close()  # as the kernel does when the process dies
    args = ["spool", "--dir", str(tmp_path), "--deliver", "--log-group", "/split/cli"]
    assert main([*args, "--large-events", "split"]) == 0
    assert "records delivered  1" in capsys.readouterr().out
    assert join_parts(messages("/split/cli")) == [WIDE]


def test_records_sent_from_the_callers_thread_are_split_too(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/split/sync", large_events="split", use_queues=False)
    logger_for(handler).info(ASCII_3MB)
    assert join_parts(messages("/split/sync")) == [ASCII_3MB]
    assert handler.stats.delivered == 1


def test_a_record_whose_parts_would_not_fit_the_memory_cap_is_truncated(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    handler = make_handler("/split/cap", large_events="split", queue_max_bytes=2_000_000)
    logger_for(handler).info(ASCII_3MB)
    assert handler.flush(timeout=30)
    (message,) = messages("/split/cap")
    assert message.endswith(" [truncated: 3000000 bytes in all]")
    assert (handler.stats.truncated, handler.stats.delivered) == (1, 1)


def test_the_services_refusals_count_whole_records(aws: FakeAWS, make_handler: Any) -> None:
    # AWS's answer for [old record: five parts, fine record, too new record: five parts].
    info = {"tooOldLogEventEndIndex": 5, "tooNewLogEventStartIndex": 6}
    aws.injector.add_fault(
        Fault("", action="PutLogEvents", times=1, answer={"rejectedLogEventsInfo": info})
    )
    handler = make_handler(
        "/split/rejected", large_events="split", max_message_size=1000, send_interval=3600
    )
    logger = logger_for(handler)
    with pytest.warns(Warning, match="refused 2 of 3 events"):
        logger.info("é" * 2000)
        logger.info("fine")
        logger.info("è" * 2000)
        assert handler.flush(timeout=10)
    stats = handler.stats
    assert (stats.received, stats.delivered, stats.rejected) == (3, 1, 2)
    assert stats.dropped == {"too_old": 1, "too_new": 1}


def test_a_record_over_several_puts_refused_in_the_first_is_one_refused_record(
    aws: FakeAWS, make_handler: Any
) -> None:
    puts = aws.injector.capture("PutLogEvents")
    info = {"expiredLogEventEndIndex": 1}
    aws.injector.add_fault(
        Fault("", action="PutLogEvents", times=1, answer={"rejectedLogEventsInfo": info})
    )
    handler = make_handler("/split/expired", large_events="split")
    with pytest.warns(Warning, match="refused 1 of 1 events"):
        logger_for(handler).info(ASCII_3MB)
        assert handler.flush(timeout=30)
    stats = handler.stats
    assert (stats.received, stats.delivered, stats.dropped) == (1, 0, {"expired": 1})
    assert len(puts) == 1  # the other parts are not sent
