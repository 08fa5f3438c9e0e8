"""logging_config and configure_logging: plain data, environment, errors, reconfiguration."""

from __future__ import annotations

import json
import logging
import logging.config
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
import yaml

from tests.conftest import ROLE_ARN
from watchtower_refresh import (
    ConfigurationError,
    RefreshingCloudWatchLogHandler,
    configure_logging,
    logging_config,
)
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]


def cloudwatch_handler() -> RefreshingCloudWatchLogHandler:
    (handler,) = [
        h for h in logging.getLogger().handlers if isinstance(h, RefreshingCloudWatchLogHandler)
    ]
    return handler


def test_the_dict_is_plain_data_that_round_trips() -> None:
    config = logging_config(
        log_group="/app/x",
        role_arn=ROLE_ARN,
        region="eu-west-1",
        tz="Asia/Tokyo",
        format="json",
        loggers="botocore=WARNING, uvicorn.access=info",
        handler_options={"send_interval": 2, "log_group_retention_days": "30"},
        environ={},
    )
    assert json.loads(json.dumps(config)) == config
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    handler = config["handlers"]["cloudwatch"]
    assert handler["role_arn"] == ROLE_ARN
    assert handler["region_name"] == "eu-west-1"
    assert handler["send_interval"] == 2
    assert config["formatters"]["cloudwatch"] == {
        "()": "watchtower_refresh.LocalTimeFormatter",
        "as_json": True,
        "tz": "Asia/Tokyo",
    }
    assert config["loggers"] == {
        "botocore": {"level": "WARNING"},
        "uvicorn.access": {"level": "INFO"},
    }
    assert config["root"]["handlers"] == ["cloudwatch", "console"]


def test_round_tripped_yaml_configures_the_same_delivery(aws: FakeAWS, messages: Read) -> None:
    config = logging_config(
        log_group="/app/yaml", role_arn=ROLE_ARN, tz="Asia/Tokyo", console=False, environ={}
    )
    logging.config.dictConfig(yaml.safe_load(yaml.safe_dump(config)))
    logging.getLogger("orders").info("order %d placed", 7)
    cloudwatch_handler().close()
    (message,) = messages("/app/yaml")
    assert message.endswith("+09:00 INFO orders order 7 placed")
    assert aws.injector.counts["AssumeRole"] == 1


def test_options_come_from_the_environment(aws: FakeAWS, messages: Read) -> None:
    environ = {
        "WATCHTOWER_REFRESH_LOG_GROUP": "/app/env",
        "WATCHTOWER_REFRESH_ROLE_ARN": ROLE_ARN,
        "WATCHTOWER_REFRESH_FORMAT": "json",
        "WATCHTOWER_REFRESH_CONSOLE": "false",
        "WATCHTOWER_REFRESH_LEVEL": "warning",
        "WATCHTOWER_REFRESH_LOGGERS": "orders=DEBUG",
        "WATCHTOWER_REFRESH_TZ": "UTC",
    }
    config = configure_logging(environ=environ, level="INFO")  # an argument wins
    assert config["root"]["level"] == "INFO"
    logging.getLogger("orders").debug("visible: orders is at DEBUG")
    logging.getLogger("other").debug("hidden")
    cloudwatch_handler().close()
    (message,) = messages("/app/env")
    document = json.loads(message)
    assert document["message"] == "visible: orders is at DEBUG"
    assert document["timestamp"].endswith("+00:00")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "log_group is required: pass it or set WATCHTOWER_REFRESH_LOG_GROUP"),
        ({"log_group": "bad name"}, "log_group 'bad name' is invalid"),
        ({"log_group": "/a", "level": "LOUD"}, "level must be one of"),
        ({"log_group": "/a", "format": "xml"}, "format must be text or json"),
        ({"log_group": "/a", "tz": "Mars/Base"}, "not a known time zone"),
        ({"log_group": "/a", "role_arn": "nope"}, "role_arn 'nope' is invalid"),
        ({"log_group": "/a", "loggers": "botocore"}, "name=LEVEL pairs"),
        ({"log_group": "/a", "loggers": {"x": "LOUD"}}, "loggers\\['x'\\] must be one of"),
        ({"log_group": "/a", "console": "maybe"}, "console must be true or false"),
        (
            {"log_group": "/a", "handler_options": {"send_intervall": 1}},
            "unknown handler_options \\['send_intervall'\\]",
        ),
        (
            {"log_group": "/a", "handler_options": {"role_arn": ROLE_ARN}},
            "unknown handler_options \\['role_arn'\\]",
        ),
        (
            {"log_group": "/a", "handler_options": {"send_interval": [1]}},
            "must be a string or a number",
        ),
        (
            {"environ": {"WATCHTOWER_REFRESH_LOGGROUP": "/a"}},
            "unknown environment variable WATCHTOWER_REFRESH_LOGGROUP",
        ),
    ],
)
def test_misspelt_or_invalid_options_are_errors(kwargs: dict[str, Any], match: str) -> None:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigurationError, match=match):
        logging_config(**kwargs)


def test_a_misspelt_argument_is_an_error() -> None:
    with pytest.raises(TypeError, match="log_grup"):
        logging_config(log_grup="/a")  # type: ignore[call-arg]


def test_uvicorn_reapplying_dict_config_loses_nothing(aws: FakeAWS, messages: Read) -> None:
    # The application configures logging at import; uvicorn then applies its own dictConfig,
    # which closes every existing handler, ours included, yet leaves it on the root logger.
    configure_logging(
        log_group="/app/uvicorn",
        role_arn=ROLE_ARN,
        console=False,
        handler_options={"flush_timeout": 60},
        environ={},
    )
    first = cloudwatch_handler()
    logging.getLogger("orders").info("before uvicorn")  # queued, not yet sent
    started = time.monotonic()
    uvicorn.Config("tests.test_config:app_stub").configure_logging()
    # dictConfig holds logging's lock while it closes handlers; a close that waited for the
    # sender (which needs that lock) would stall start-up for the whole flush_timeout.
    assert time.monotonic() - started < 30
    assert first in logging.getLogger().handlers
    logging.getLogger("orders").info("after uvicorn")
    # Reapplied with a configuration that names a new handler of ours: no loss either.
    configure_logging(log_group="/app/uvicorn", role_arn=ROLE_ARN, console=False, environ={})
    second = cloudwatch_handler()
    assert second is not first
    logging.getLogger("orders").info("after the new config")
    first.close()
    second.close()
    texts = sorted(message.split(" orders ", 1)[1] for message in messages("/app/uvicorn"))
    assert texts == ["after the new config", "after uvicorn", "before uvicorn"]
    assert first.stats.dropped == second.stats.dropped == {}


async def app_stub(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app for uvicorn.Config; never called."""
