"""LocalTimeFormatter: zone and offset in %(asctime)s, JSON mode, and dictConfig use."""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
import sys
import time
from typing import Any

import pytest

from watchtower_refresh import ConfigurationError, LocalTimeFormatter
from watchtower_refresh._redact import install_redaction

CREATED = datetime.datetime(2026, 11, 21, 22, 28, 47, 123456, tzinfo=datetime.timezone.utc)


def record(msg: Any = "order %s placed", args: Any = (42,), **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("orders", logging.INFO, __file__, 7, msg, args, None)
    made.created = CREATED.timestamp()
    made.__dict__.update(extra)
    return made


def test_default_asctime_is_iso_with_milliseconds_and_offset() -> None:
    formatter = LocalTimeFormatter("%(asctime)s %(message)s", tz="Asia/Tokyo")
    assert formatter.format(record()) == "2026-11-22T07:28:47.123+09:00 order 42 placed"


def test_datefmt_with_offset_and_zone_name() -> None:
    formatter = LocalTimeFormatter("%(asctime)s", "%Y-%m-%d %H:%M:%S %z %Z", tz="America/New_York")
    assert formatter.format(record()) == "2026-11-21 17:28:47 -0500 EST"


def test_utc_and_tzinfo() -> None:
    assert LocalTimeFormatter("%(asctime)s", tz="UTC").format(record()).endswith("+00:00")
    fixed = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    assert (
        LocalTimeFormatter("%(asctime)s", tz=fixed).format(record()).endswith("03:58:47.123+05:30")
    )


@pytest.mark.skipif(sys.platform == "win32", reason="time.tzset is POSIX")
def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert LocalTimeFormatter("%(asctime)s").format(record()) == "2026-11-21T23:28:47.123+01:00"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.skipif(sys.platform == "win32", reason="time.tzset is POSIX")
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/St_Johns", "UTC"])
@pytest.mark.parametrize("datefmt", [None, "%Y-%m-%d %H:%M:%S %z"])
def test_local_time_reads_the_same_while_the_interpreter_finalizes(
    monkeypatch: pytest.MonkeyPatch, zone: str, datefmt: str | None
) -> None:
    # At exit the local time is made without datetime (CPython 3.13.0 crashes in it then);
    # the line must not change. test_lifecycle runs the exit itself.
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        formatter = LocalTimeFormatter("%(asctime)s", datefmt)
        running = formatter.format(record())
        monkeypatch.setattr("watchtower_refresh._formatter._finalizing", lambda: True)
        assert formatter.format(record()) == running
    finally:
        monkeypatch.undo()
        time.tzset()


def test_unknown_zone_fails_at_configuration() -> None:
    with pytest.raises(ConfigurationError, match="tz 'Mars/Olympus' is not a known time zone"):
        LocalTimeFormatter(tz="Mars/Olympus")
    config = {
        "version": 1,
        "formatters": {"f": {"()": "watchtower_refresh.LocalTimeFormatter", "tz": "Nowhere/X"}},
    }
    with pytest.raises(ValueError, match="Unable to configure formatter 'f'") as caught:
        logging.config.dictConfig(config)
    assert "tz 'Nowhere/X' is not a known time zone" in str(caught.value.__cause__)


def test_dict_messages_are_json_as_in_watchtower() -> None:
    formatter = LocalTimeFormatter("%(asctime)s %(message)s", tz="UTC")
    assert formatter.format(record({"order": 42}, None)) == '{"order": 42}'


def test_json_mode_puts_fields_at_top_level() -> None:
    formatter = LocalTimeFormatter(tz="Asia/Tokyo", as_json="true")
    document = json.loads(formatter.format(record(request_id="r-1")))
    assert document == {
        "timestamp": "2026-11-22T07:28:47.123+09:00",
        "level": "INFO",
        "logger": "orders",
        "message": "order 42 placed",
        "request_id": "r-1",
    }
    merged = json.loads(formatter.format(record({"event": "paid", "level": "info"}, None)))
    assert merged["event"] == "paid"
    assert merged["level"] == "INFO"  # "info" says the same: not repeated
    assert "msg_level" not in merged
    try:
        raise KeyError("missing")
    except KeyError:
        failed = record()
        failed.exc_info = sys.exc_info()
    assert "KeyError: 'missing'" in json.loads(formatter.format(failed))["exception"]


def test_json_mode_serialises_what_json_cannot() -> None:
    formatter = LocalTimeFormatter(as_json=True, json_serialize_default="builtins:str")
    document = json.loads(
        formatter.format(record({"when": datetime.date(2026, 1, 2), "o": {1}}, None))
    )
    assert document["when"] == "2026-01-02"
    assert document["o"] == "{1}"


def test_built_by_dict_config_with_positional_names() -> None:
    config = {
        "version": 1,
        "formatters": {
            "f": {
                "()": "watchtower_refresh.LocalTimeFormatter",
                "fmt": "{asctime} {message}",
                "style": "{",
                "tz": "Asia/Tokyo",
            }
        },
        "handlers": {"h": {"class": "logging.NullHandler", "formatter": "f"}},
        "loggers": {"x": {"handlers": ["h"]}},
    }
    logging.config.dictConfig(config)
    formatter = logging.getLogger("x").handlers[0].formatter
    assert formatter is not None
    assert formatter.format(record()).startswith("2026-11-22T07:28:47.123+09:00 ")
    logging.getLogger("x").handlers.clear()


def test_json_mode_keeps_its_own_fields_and_renames_colliding_keys() -> None:
    formatter = LocalTimeFormatter(tz="UTC", as_json=True)
    message = {"event": "paid", "level": "audit", "timestamp": "yesterday", "logger": "orders"}
    document = json.loads(formatter.format(record(message, None, level="from-extra")))
    assert document == {
        "timestamp": "2026-11-21T22:28:47.123+00:00",
        "level": "INFO",
        "logger": "orders",  # the message's "orders" says the same: not repeated
        "event": "paid",
        "msg_level": "audit",
        "msg_timestamp": "yesterday",
    }
    assert message["level"] == "audit"  # the message itself is untouched


def test_json_mode_honours_add_log_record_attrs() -> None:
    formatter = LocalTimeFormatter(
        tz="UTC", as_json=True, add_log_record_attrs=["filename", "lineno", "msg"]
    )
    document = json.loads(formatter.format(record()))
    assert document["filename"] == "test_formatter.py"
    assert document["lineno"] == 7
    assert document["message"] == "order 42 placed"
    assert "msg" not in document
    structured = json.loads(formatter.format(record({"order": 42}, None)))
    assert structured["order"] == 42
    assert structured["filename"] == "test_formatter.py"


def test_text_mode_leaves_the_record_for_the_next_handler() -> None:
    with_attrs = LocalTimeFormatter(add_log_record_attrs=("levelname",))
    plain = LocalTimeFormatter("%(levelname)s %(message)s")
    text_record = record()
    assert json.loads(with_attrs.format(text_record)) == {
        "msg": "order 42 placed",
        "levelname": "INFO",
    }
    assert text_record.msg == "order %s placed"
    assert plain.format(text_record) == "INFO order 42 placed"  # not a JSON string
    message = {"order": 42}
    dict_record = record(message, None)
    assert json.loads(with_attrs.format(dict_record)) == {"order": 42, "levelname": "INFO"}
    assert dict_record.msg is message
    assert message == {"order": 42}


def test_json_keeps_the_traceback_of_a_botocore_record() -> None:
    """The redaction filter formats botocore's tracebacks into ``exc_text``: JSON keeps them."""
    install_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LocalTimeFormatter(as_json=True, tz="UTC"))
    logger = logging.getLogger("botocore.parsers")
    logger.addHandler(handler)
    disabled, logger.disabled = logger.disabled, False  # an earlier dictConfig may disable it
    try:
        try:
            raise ConnectionError("endpoint went away")
        except ConnectionError:
            logger.error("request failed", exc_info=True)
    finally:
        logger.removeHandler(handler)
        logger.disabled = disabled
    document = json.loads(stream.getvalue())
    assert "ConnectionError: endpoint went away" in document["exception"]
