"""Option coercion: typed values and their text forms, and the errors for everything else."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest

from watchtower_refresh import ConfigurationError, RefreshingCloudWatchLogHandler
from watchtower_refresh._options import (
    LOG_STREAM_PATTERN,
    as_bool,
    as_callable,
    as_float,
    as_int,
    as_optional_str,
    as_retention_days,
    as_tags,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (0, False), ("Yes", True), (" off ", False), ("1", True), ("false", False)],
)
def test_as_bool(value: object, expected: bool) -> None:
    assert as_bool("flag", value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, 1.0])
def test_as_bool_rejects(value: object) -> None:
    with pytest.raises(ConfigurationError, match="flag must be true or false"):
        as_bool("flag", value)


def test_as_int() -> None:
    assert as_int("n", " 42 ", minimum=1) == 42
    assert as_int("n", 7, minimum=1, maximum=7) == 7
    for bad in (True, 0, 8, "4.5", None, 3.0):
        with pytest.raises(ConfigurationError, match="n must be a whole number at least 1"):
            as_int("n", bad, minimum=1, maximum=7)


def test_as_float() -> None:
    assert as_float("s", "2.5", minimum=0) == 2.5
    assert as_float("s", 3, minimum=0) == 3.0
    assert as_float("s", datetime.timedelta(minutes=1), minimum=0) == 60.0
    for bad in ("soon", -1, float("nan"), True, None, "11", "inf", float("inf"), "-inf", "nan"):
        with pytest.raises(ConfigurationError, match="s must be a number"):
            as_float("s", bad, minimum=0, maximum=10)


@pytest.mark.parametrize(
    ("option", "value"), [("flush_timeout", "inf"), ("send_interval", float("inf"))]
)
def test_the_handler_refuses_non_finite_seconds(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be a number at least 0.0"):
        RefreshingCloudWatchLogHandler("app", **{option: value})


def test_as_retention_days() -> None:
    assert as_retention_days("r", "30") == 30
    assert as_retention_days("r", 3653) == 3653
    assert as_retention_days("r", None) is None
    assert as_retention_days("r", "") is None
    for bad in (31, "2", 0, "thirty"):
        with pytest.raises(ConfigurationError, match="r must be"):
            as_retention_days("r", bad)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"log_group_name": "/app/ordérs"}, "log_group_name '/app/ordérs' is invalid"),
        ({"log_group_name": "/app/日本"}, "A-Z, a-z, 0-9 and _-./#"),
        ({"role_arn": "arn:aws:iam::123456789012:role/café"}, "role_arn .* is invalid"),
        ({"role_arn": "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/app"}, "role_arn .* is invalid"),
        (
            {"role_arn": "arn:aws:iam::123456789012:role/app", "role_session_name": "sessión"},
            "role_session_name .* is invalid",
        ),
    ],
)
def test_names_use_the_character_sets_aws_documents(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RefreshingCloudWatchLogHandler(**options)


def test_names_aws_accepts_are_accepted() -> None:
    handler = RefreshingCloudWatchLogHandler(
        "/aws/app_1/Orders-2.x#blue",
        role_arn="arn:aws:iam::123456789012:role/path/app+logs=1,a.b@c-d",
        role_session_name="worker_1+x=y,z.w@host-2",
    )
    handler.close()
    assert re.fullmatch(LOG_STREAM_PATTERN, "web 1/ordérs/日本/[x]")
    assert not re.fullmatch(LOG_STREAM_PATTERN, "a:b")
    assert not re.fullmatch(LOG_STREAM_PATTERN, "a*b")


def test_as_optional_str() -> None:
    assert as_optional_str("x", "  ") is None
    assert as_optional_str("x", None) is None
    assert as_optional_str("x", " a ") == "a"
    with pytest.raises(ConfigurationError, match="x must be a string, not int"):
        as_optional_str("x", 5)


def test_as_tags() -> None:
    assert as_tags("t", None) == {}
    assert as_tags("t", "a=1, b = two") == {"a": "1", "b": "two"}
    assert as_tags("t", json.dumps({"a": 1})) == {"a": "1"}
    assert as_tags("t", {"k": "v"}) == {"k": "v"}
    with pytest.raises(ConfigurationError, match="not a valid JSON object"):
        as_tags("t", "{oops")
    with pytest.raises(ConfigurationError, match="mapping of tag names"):
        as_tags("t", ["a"])
    with pytest.raises(ConfigurationError, match="key=value pairs"):
        as_tags("t", "=x")


def test_as_callable() -> None:
    assert as_callable("f", None) is None
    assert as_callable("f", len) is len
    assert as_callable("f", "json:dumps") is json.dumps
    assert as_callable("f", "json.dumps") is json.dumps
    assert as_callable("f", "datetime:datetime.now") == datetime.datetime.now
    with pytest.raises(ConfigurationError, match="not a dotted path"):
        as_callable("f", "dumps")
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        as_callable("f", "json:nope")
    with pytest.raises(ConfigurationError, match="is not callable"):
        as_callable("f", "json:__name__")
    with pytest.raises(ConfigurationError, match="must be a callable or a dotted path"):
        as_callable("f", 3)
