"""Option coercion: typed values and their text forms, and the errors for everything else."""

from __future__ import annotations

import datetime
import json

import pytest

from watchtower_refresh import ConfigurationError
from watchtower_refresh._options import (
    as_bool,
    as_callable,
    as_float,
    as_int,
    as_optional_str,
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
    for bad in ("soon", -1, float("nan"), True, None, "11"):
        with pytest.raises(ConfigurationError, match="s must be a number"):
            as_float("s", bad, minimum=0, maximum=10)


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
