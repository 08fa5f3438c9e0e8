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
from watchtower_refresh._config import _handler_option_names, program_name
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
        "urllib3": {"level": "WARNING"},
        "s3transfer": {"level": "WARNING"},
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
            "must be a string, a number or a boolean",
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
    # mypy --strict (warn_unused_ignores) proves each call is a type error too.
    with pytest.raises(TypeError, match="log_grup"):
        logging_config(log_grup="/a")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="log_groop"):
        configure_logging(log_groop="/a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        configure_logging("/a")  # type: ignore[call-arg]  # keyword-only


# A valid text value for every handler option, as an environment variable carries it.
HANDLER_OPTION_TEXT = {
    "buffer_at": "DEBUG",
    "buffer_max_bytes": "65536",
    "buffer_sample_rate": "0.1",
    "create_log_group": "false",
    "create_log_stream": "false",
    "deletion_protection": "false",
    "drop_markers": "false",
    "duration_seconds": "900",
    "entity": '{"keyAttributes": {"Type": "Service", "Name": "orders", "Environment": "prod"}}',
    "endpoint_url": "http://127.0.0.1:1",
    "external_id": "ext-id-1",
    "flush_timeout": "2.5",
    "json_serialize_default": "builtins:str",
    "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "large_events": "split",
    "log_group_class": "INFREQUENT_ACCESS",
    "log_group_retention_days": "30",
    "log_group_tags": "team=platform,env=prod",
    "max_batch_count": "500",
    "max_batch_size": "65536",
    "max_message_size": "200000",
    "metrics_interval": "60",
    "metrics_namespace": "Orders/Logging",
    "queue_max_bytes": "1048576",
    "queue_max_events": "1000",
    "role_session_name": "worker-1",
    "send_interval": "2",
    "session_factory": "boto3:Session",
    "spool_fsync": "true",
    "spool_max_bytes": "1048576",
    "trace_context": "false",
    "use_queues": "false",
}
_NEEDS_ROLE = {"duration_seconds", "external_id", "role_session_name"}


def test_every_handler_option_has_a_table_entry() -> None:
    assert set(HANDLER_OPTION_TEXT) == _handler_option_names()


@pytest.mark.parametrize("option", sorted(HANDLER_OPTION_TEXT))
def test_every_handler_option_has_its_environment_variable(option: str) -> None:
    text = HANDLER_OPTION_TEXT[option]
    environ = {"WATCHTOWER_REFRESH_LOG_GROUP": "/a", f"WATCHTOWER_REFRESH_{option.upper()}": text}
    if option in _NEEDS_ROLE:
        environ["WATCHTOWER_REFRESH_ROLE_ARN"] = ROLE_ARN
    entry = logging_config(environ=environ)["handlers"]["cloudwatch"]
    assert entry[option] == text
    # handler_options wins over the environment.
    assert (
        logging_config(environ=environ, handler_options={option: text})["handlers"]["cloudwatch"][
            option
        ]
        == text
    )
    # And the handler accepts the text as it stands.
    options = {key: value for key, value in entry.items() if key not in ("()", "formatter")}
    RefreshingCloudWatchLogHandler(**options).close()


def test_send_interval_from_the_environment_is_not_an_error() -> None:
    config = logging_config(
        environ={"WATCHTOWER_REFRESH_LOG_GROUP": "/a", "WATCHTOWER_REFRESH_SEND_INTERVAL": "1"},
        handler_options={"flush_timeout": 3},
    )
    assert config["handlers"]["cloudwatch"]["send_interval"] == "1"
    assert config["handlers"]["cloudwatch"]["flush_timeout"] == 3


def test_handler_options_take_a_mapping_of_tags() -> None:
    config = logging_config(
        log_group="/a", handler_options={"log_group_tags": {"team": "platform", "n": 1}}, environ={}
    )
    tags = config["handlers"]["cloudwatch"]["log_group_tags"]
    assert tags == {"team": "platform", "n": "1"}
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    logging.config.dictConfig(config)
    assert cloudwatch_handler().log_group_tags == {"team": "platform", "n": "1"}


def test_library_loggers_stay_at_warning_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_group="/a", environ={})
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")
    logging.getLogger("orders").info("order placed")
    err = capsys.readouterr().err
    assert "order placed" in err
    assert "Found credentials" not in err
    assert "HTTPS connection" not in err
    config = logging_config(log_group="/a", loggers={"botocore": "DEBUG"}, environ={})
    assert config["loggers"]["botocore"] == {"level": "DEBUG"}
    assert config["loggers"]["urllib3"] == {"level": "WARNING"}


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/srv/app/worker.py"], "worker"),
        (["/usr/lib/python3/site-packages/django/__main__.py", "runserver"], "django"),
        (["/venv/bin/uvicorn", "app:app"], "uvicorn"),
        (["-c"], "python"),
        ([""], "python"),
        ([], "python"),
        (["C:\\app\\run.py"], "run"),
        (["/x/odd {name}:*.py"], "odd-name"),
    ],
)
def test_program_name_is_short_and_readable(argv: list[str], name: str) -> None:
    assert program_name(argv) == name


def test_default_stream_uses_the_short_program_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/tmp/x/site-packages/django/__main__.py", "runserver"])
    config = logging_config(log_group="/a", environ={})
    assert config["handlers"]["cloudwatch"]["log_stream_name"] == (
        "{machine_name}/django/{process_id}"
    )


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
