"""``logging_config()`` and ``configure_logging()``: the common case as a ``dictConfig`` dict.

The dict holds only strings, numbers, booleans, lists and dicts, so ``yaml.safe_dump`` and
``json.dumps`` round-trip it, and the result configures the same thing. Every option also
comes from an environment variable (``WATCHTOWER_REFRESH_<OPTION>``), so an ECS task
definition or a Lambda function can set them without code; arguments win over the
environment. A misspelt argument or ``WATCHTOWER_REFRESH_*`` variable is an error.
"""

from __future__ import annotations

import inspect
import logging
import logging.config
import os
from collections.abc import Mapping
from typing import Any

from ._credentials import SessionOptions
from ._exceptions import ConfigurationError
from ._formatter import resolve_zone
from ._handler import RefreshingCloudWatchLogHandler
from ._options import LOG_GROUP_PATTERN, LOG_GROUP_RULE, as_bool, as_pairs, check_pattern

__all__ = ["ENV_PREFIX", "configure_logging", "logging_config"]

ENV_PREFIX = "WATCHTOWER_REFRESH_"
HANDLER_PATH = "watchtower_refresh.RefreshingCloudWatchLogHandler"
FORMATTER_PATH = "watchtower_refresh.LocalTimeFormatter"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_OPTIONS = (
    "log_group",
    "stream",
    "role_arn",
    "profile",
    "region",
    "level",
    "tz",
    "format",
    "console",
    "loggers",
    "spool_dir",
)
_LEVELS = frozenset(("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"))
# Handler options that have their own argument here (under another name) or that YAML
# cannot carry; everything else of the handler's may go in handler_options.
_NOT_IN_HANDLER_OPTIONS = frozenset(
    {"log_group_name", "log_stream_name", "role_arn", "profile_name", "region_name", "level"}
    | {"spool_dir"}
    | {"boto3_client", "log_group", "stream_name", "boto3_profile_name", "self"}
)


def logging_config(
    *,
    log_group: str | None = None,
    stream: str | None = None,
    role_arn: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    level: str | None = None,
    tz: str | None = None,
    format: str | None = None,
    console: bool | str | None = None,
    loggers: Mapping[str, str] | str | None = None,
    spool_dir: str | None = None,
    handler_options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return a complete ``dictConfig`` dict that ships the root logger to CloudWatch Logs.

    Each option, when not given, is read from ``WATCHTOWER_REFRESH_<NAME>`` (for example
    ``WATCHTOWER_REFRESH_LOG_GROUP``, ``WATCHTOWER_REFRESH_LOGGERS``).

    Args:
        log_group: Log group name (required, here or in the environment).
        stream: Stream name template (watchtower's fields); default
            ``{machine_name}/{program_name}/{process_id}``: one stream per process.
        role_arn: Role the handler assumes.
        profile: Profile of the shared config files.
        region: Region of CloudWatch Logs and STS.
        level: Root level name; default ``INFO``.
        tz: IANA zone for timestamps (``Asia/Tokyo``); default the process's local zone.
        format: ``text`` (default) or ``json`` (one JSON object per record, fields at top
            level for CloudWatch Logs Insights).
        console: Also log to stderr; default true.
        loggers: Levels of other loggers: a mapping or ``name=LEVEL,name2=LEVEL``.
        spool_dir: An existing directory for the handler's disk spool; default none.
        handler_options: More handler options (``send_interval``, ``log_group_retention_days``,
            ...); strings and numbers only.
        environ: Where to read ``WATCHTOWER_REFRESH_*`` from; default ``os.environ``.

    Raises:
        ConfigurationError: An option is missing, misspelt or invalid.
    """
    given = {
        "log_group": log_group,
        "stream": stream,
        "role_arn": role_arn,
        "profile": profile,
        "region": region,
        "level": level,
        "tz": tz,
        "format": format,
        "console": console,
        "loggers": loggers,
        "spool_dir": spool_dir,
    }
    options: dict[str, Any] = {**_from_environment(os.environ if environ is None else environ)}
    options.update({name: value for name, value in given.items() if value is not None})
    group = options.get("log_group")
    if not group:
        message = f"log_group is required: pass it or set {ENV_PREFIX}LOG_GROUP"
        raise ConfigurationError(message)
    check_pattern("log_group", str(group), LOG_GROUP_PATTERN, LOG_GROUP_RULE)
    root_level = _level("level", options.get("level", "INFO"))
    output = str(options.get("format", "text")).strip().lower()
    if output not in ("text", "json"):
        message = f"format must be text or json, not {options.get('format')!r}"
        raise ConfigurationError(message)
    zone = options.get("tz")
    resolve_zone(zone)  # an unknown zone fails here, not at the first record
    SessionOptions.parse(options.get("role_arn"), profile_name=options.get("profile"))

    formatter: dict[str, Any] = {"()": FORMATTER_PATH, "as_json": output == "json"}
    if output == "text":
        formatter["fmt"] = TEXT_FORMAT
    if zone:
        formatter["tz"] = str(zone)
    handler: dict[str, Any] = {
        "()": HANDLER_PATH,
        "formatter": "cloudwatch",
        "log_group_name": str(group),
        "log_stream_name": str(
            options.get("stream") or "{machine_name}/{program_name}/{process_id}"
        ),
    }
    for name, key in (
        ("role_arn", "role_arn"),
        ("profile", "profile_name"),
        ("region", "region_name"),
        ("spool_dir", "spool_dir"),
    ):
        if options.get(name):
            handler[key] = str(options[name])
    handler.update(_handler_options(handler_options or {}))
    handlers = ["cloudwatch"]
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cloudwatch": formatter},
        "handlers": {"cloudwatch": handler},
        "root": {"level": root_level, "handlers": handlers},
    }
    if as_bool("console", options.get("console", True)):
        config["formatters"]["console"] = dict(formatter)
        config["handlers"]["console"] = {
            "class": "logging.StreamHandler",
            "formatter": "console",
            "stream": "ext://sys.stderr",
        }
        handlers.append("console")
    levels = _logger_levels(options.get("loggers"))
    if levels:
        config["loggers"] = {name: {"level": lvl} for name, lvl in levels.items()}
    return config


def configure_logging(**options: Any) -> dict[str, Any]:
    """Apply ``logging_config(**options)`` with ``logging.config.dictConfig``; return the dict.

    No network I/O: safe at import time and in Lambda's init phase.
    """
    config = logging_config(**options)
    logging.config.dictConfig(config)
    return config


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        option = name[len(ENV_PREFIX) :].lower()
        if option not in _OPTIONS:
            known = ", ".join(f"{ENV_PREFIX}{o.upper()}" for o in _OPTIONS)
            message = f"unknown environment variable {name}; known: {known}"
            raise ConfigurationError(message)
        found[option] = value
    return found


def _level(name: str, value: object) -> str:
    text = str(value).strip().upper()
    if text not in _LEVELS:
        message = f"{name} must be one of {', '.join(sorted(_LEVELS))}, not {value!r}"
        raise ConfigurationError(message)
    return text


def _logger_levels(value: object) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = as_pairs("loggers", value, "name=LEVEL")
    if not isinstance(value, Mapping):
        message = f"loggers must be a mapping of logger names to levels, not {value!r}"
        raise ConfigurationError(message)
    return {str(name): _level(f"loggers[{name!r}]", level) for name, level in value.items()}


def _handler_options(options: Mapping[str, Any]) -> dict[str, Any]:
    known = set(inspect.signature(RefreshingCloudWatchLogHandler.__init__).parameters)
    allowed = known - _NOT_IN_HANDLER_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        message = (
            f"unknown handler_options {unknown}; known: {', '.join(sorted(allowed))} "
            "(the credential and naming options have arguments of their own)"
        )
        raise ConfigurationError(message)
    for name, value in options.items():
        if not isinstance(value, (str, int, float, bool)):
            kind = type(value).__name__
            message = f"handler_options[{name!r}] must be a string or a number, not {kind}"
            raise ConfigurationError(message)
    return dict(options)
