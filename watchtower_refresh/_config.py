"""``logging_config()`` and ``configure_logging()``: the common case as a ``dictConfig`` dict.

The dict holds only strings, numbers, booleans, lists and dicts, so ``yaml.safe_dump`` and
``json.dumps`` round-trip it, and the result configures the same thing. Every option, and
every handler option, also comes from an environment variable
(``WATCHTOWER_REFRESH_<OPTION>``, e.g. ``WATCHTOWER_REFRESH_SEND_INTERVAL``), so an ECS task
definition or a Lambda function can set them without code; arguments win over the
environment. A misspelt argument or ``WATCHTOWER_REFRESH_*`` variable is an error.
"""

from __future__ import annotations

import inspect
import logging
import logging.config
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from ._aws import SessionOptions
from ._exceptions import ConfigurationError
from ._formatter import resolve_zone
from ._handler import RefreshingCloudWatchLogHandler
from ._options import LOG_GROUP_PATTERN, LOG_GROUP_RULE, as_bool, as_pairs, check_pattern

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from 3.11; annotations only

__all__ = ["ENV_PREFIX", "QUIET_LOGGERS", "configure_logging", "logging_config", "program_name"]

ENV_PREFIX = "WATCHTOWER_REFRESH_"
HANDLER_PATH = "watchtower_refresh.RefreshingCloudWatchLogHandler"
FORMATTER_PATH = "watchtower_refresh.LocalTimeFormatter"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LoggingOptions(TypedDict, total=False):
    """The keyword arguments of ``logging_config`` and ``configure_logging`` (see there)."""

    log_group: str | None
    stream: str | None
    role_arn: str | None
    profile: str | None
    region: str | None
    level: str | None
    tz: str | None
    format: str | None
    console: bool | str | None
    loggers: Mapping[str, str] | str | None
    handle_signals: bool | str | None
    spool_dir: str | None
    handler_options: Mapping[str, Any] | None
    environ: Mapping[str, str] | None


_ARGUMENTS = tuple(LoggingOptions.__annotations__)
_OPTIONS = tuple(name for name in _ARGUMENTS if name not in ("handler_options", "environ"))
_LEVELS = frozenset(("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"))
# Chatty at INFO (botocore prints every credential lookup) and never the application's own
# story: kept at WARNING unless ``loggers`` names them.
QUIET_LOGGERS = {"botocore": "WARNING", "urllib3": "WARNING", "s3transfer": "WARNING"}
# Handler options that have their own argument here (under another name) or that YAML
# cannot carry; everything else of the handler's may go in handler_options.
_NOT_IN_HANDLER_OPTIONS = frozenset(
    {"log_group_name", "log_stream_name", "role_arn", "profile_name", "region_name", "level"}
    | {"boto3_client", "log_group", "stream_name", "boto3_profile_name", "self"}
    | {"handle_signals", "spool_dir"}
)


def logging_config(**arguments: Unpack[LoggingOptions]) -> dict[str, Any]:
    """Return a complete ``dictConfig`` dict that ships the root logger to CloudWatch Logs.

    Each option, when not given, is read from ``WATCHTOWER_REFRESH_<NAME>`` (for example
    ``WATCHTOWER_REFRESH_LOG_GROUP``, ``WATCHTOWER_REFRESH_LOGGERS``).

    Keyword Args:
        log_group: Log group name (required, here or in the environment).
        stream: Stream name template (watchtower's fields); default
            ``{machine_name}/<program>/{process_id}``, one stream per process, where
            ``<program>`` is ``program_name()``: ``worker`` for ``/srv/worker.py``,
            ``django`` for ``python -m django`` (watchtower's ``{program_name}`` is the
            whole ``argv[0]`` path).
        role_arn: Role the handler assumes.
        profile: Profile of the shared config files.
        region: Region of CloudWatch Logs and STS.
        level: Root level name; default ``INFO``.
        tz: IANA zone for timestamps (``Asia/Tokyo``); default the process's local zone.
        format: ``text`` (default) or ``json`` (one JSON object per record, fields at top
            level for CloudWatch Logs Insights).
        console: Also log to stderr; default true.
        loggers: Levels of other loggers: a mapping or ``name=LEVEL,name2=LEVEL``.
            botocore, urllib3 and s3transfer are at WARNING unless named here.
        handle_signals: Deliver on SIGTERM before the process ends; default true.
        spool_dir: An existing directory for the handler's disk spool; default none.
        handler_options: More handler options (``send_interval``, ``log_group_retention_days``,
            ...): strings, numbers and booleans, and a mapping for ``log_group_tags``. Each
            may also come from ``WATCHTOWER_REFRESH_<OPTION>``; this argument wins.
        environ: Where to read ``WATCHTOWER_REFRESH_*`` from; default ``os.environ``.

    Raises:
        ConfigurationError: An option is missing, misspelt or invalid.
    """
    options, handler_from_environment = _gather(arguments)
    group = _log_group(options)
    root_level = _level("level", options.get("level", "INFO"))
    output = _output_format(options)
    zone = options.get("tz")
    resolve_zone(zone)  # an unknown zone fails here, not at the first record
    SessionOptions.parse(options.get("role_arn"), profile_name=options.get("profile"))
    formatter = _formatter(output, zone)
    handler = _cloudwatch_handler(
        group, options, handler_from_environment, arguments.get("handler_options")
    )
    console = as_bool("console", options.get("console", True))
    config = _dict_config(root_level, formatter, handler, console=console)
    levels = {**QUIET_LOGGERS, **_logger_levels(options.get("loggers"))}
    config["loggers"] = {name: {"level": lvl} for name, lvl in levels.items()}
    return config


def _gather(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """This function's options, from the arguments over the environment, and the handler
    options found in the environment."""
    unknown = sorted(set(arguments) - set(_ARGUMENTS))
    if unknown:  # as Python says of a misspelt keyword; mypy finds it first
        message = f"logging_config() got unexpected keyword arguments {unknown}"
        raise TypeError(message)
    environ = arguments.get("environ")
    from_environment, handler_from_environment = _from_environment(
        os.environ if environ is None else environ
    )
    options: dict[str, Any] = dict(from_environment)
    options.update({k: v for k, v in arguments.items() if k in _OPTIONS and v is not None})
    return options, handler_from_environment


def _log_group(options: Mapping[str, Any]) -> str:
    """The log group, required and checked."""
    group = options.get("log_group")
    if not group:
        message = f"log_group is required: pass it or set {ENV_PREFIX}LOG_GROUP"
        raise ConfigurationError(message)
    return check_pattern("log_group", str(group), LOG_GROUP_PATTERN, LOG_GROUP_RULE)


def _output_format(options: Mapping[str, Any]) -> str:
    """``format``: ``text`` or ``json``, in any case."""
    output = str(options.get("format", "text")).strip().lower()
    if output not in ("text", "json"):
        message = f"format must be text or json, not {options.get('format')!r}"
        raise ConfigurationError(message)
    return output


def _formatter(output: str, zone: object) -> dict[str, Any]:
    """The ``LocalTimeFormatter`` entry for ``output`` (``text`` or ``json``) in ``zone``."""
    formatter: dict[str, Any] = {"()": FORMATTER_PATH, "as_json": output == "json"}
    if output == "text":
        formatter["fmt"] = TEXT_FORMAT
    if zone:
        formatter["tz"] = str(zone)
    return formatter


def _cloudwatch_handler(
    group: str,
    options: Mapping[str, Any],
    from_environment: Mapping[str, str],
    handler_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The handler's entry: the group, the stream, the options with an argument of their
    own here, then the handler options of the environment and ``handler_options`` (checked,
    the argument winning)."""
    handler: dict[str, Any] = {
        "()": HANDLER_PATH,
        "formatter": "cloudwatch",
        "log_group_name": group,
        "log_stream_name": str(
            options.get("stream") or f"{{machine_name}}/{program_name()}/{{process_id}}"
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
    if "handle_signals" in options:
        handler["handle_signals"] = as_bool("handle_signals", options["handle_signals"])
    handler.update(_handler_options({**from_environment, **(handler_options or {})}))
    return handler


def _dict_config(
    root_level: str, formatter: dict[str, Any], handler: dict[str, Any], *, console: bool
) -> dict[str, Any]:
    """The ``dictConfig`` dict: the root logger at ``root_level`` to the handler, and to
    stderr too with ``console``."""
    handlers = ["cloudwatch"]
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cloudwatch": formatter},
        "handlers": {"cloudwatch": handler},
        "root": {"level": root_level, "handlers": handlers},
    }
    if console:
        config["formatters"]["console"] = dict(formatter)
        config["handlers"]["console"] = {
            "class": "logging.StreamHandler",
            "formatter": "console",
            "stream": "ext://sys.stderr",
        }
        handlers.append("console")
    return config


def configure_logging(**arguments: Unpack[LoggingOptions]) -> dict[str, Any]:
    """Apply ``logging_config(...)`` with ``logging.config.dictConfig``; return the dict.

    Takes exactly ``logging_config``'s arguments (see there). No network I/O: safe at
    import time and in Lambda's init phase.

    Raises:
        ConfigurationError: An option is missing, misspelt or invalid.
    """
    config = logging_config(**arguments)
    logging.config.dictConfig(config)
    return config


def program_name(argv: Sequence[str] | None = None) -> str:
    """A short, readable name for the running program, for stream names.

    ``/srv/app/worker.py`` gives ``worker``; ``python -m django`` (``.../django/__main__.py``)
    gives ``django``; a console script such as ``/venv/bin/uvicorn`` gives ``uvicorn``;
    ``python -c`` or an interactive session gives ``python``. Characters other than letters,
    digits, ``.``, ``_`` and ``-`` become ``-``, so the name is safe in a stream template.
    """
    args = sys.argv if argv is None else argv
    path = (args[0] if args else "").replace("\\", "/").rstrip("/")
    parts = [part for part in path.split("/") if part]
    if not parts or parts[-1] in ("-c", "-m", "-"):
        return "python"
    name = parts[-1]
    if name in ("__main__.py", "__main__") and len(parts) > 1:
        name = parts[-2]  # python -m package
    name = name.removesuffix(".py").removesuffix(".pyz")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return name[:100] or "python"


def _from_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``WATCHTOWER_REFRESH_*`` into this function's options and handler options."""
    handler_names = _handler_option_names()
    found: dict[str, str] = {}
    for_handler: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        option = name[len(ENV_PREFIX) :].lower()
        if option in _OPTIONS:
            found[option] = value
        elif option in handler_names:
            for_handler[option] = value
        else:
            known = ", ".join(
                f"{ENV_PREFIX}{o.upper()}" for o in (*_OPTIONS, *sorted(handler_names))
            )
            message = f"unknown environment variable {name}; known: {known}"
            raise ConfigurationError(message)
    return found, for_handler


def _handler_option_names() -> frozenset[str]:
    """The handler's options that ``handler_options`` (and the environment) may carry."""
    known = set(inspect.signature(RefreshingCloudWatchLogHandler.__init__).parameters)
    return frozenset(known - _NOT_IN_HANDLER_OPTIONS)


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
    allowed = _handler_option_names()
    unknown = sorted(set(options) - allowed)
    if unknown:
        message = (
            f"unknown handler_options {unknown}; known: {', '.join(sorted(allowed))} "
            "(the credential and naming options have arguments of their own)"
        )
        raise ConfigurationError(message)
    plain: dict[str, Any] = {}
    for name, value in options.items():
        if name == "log_group_tags" and isinstance(value, Mapping):
            plain[name] = {str(key): str(tag) for key, tag in value.items()}
        elif isinstance(value, (str, int, float, bool)):
            plain[name] = value
        else:
            kind = type(value).__name__
            message = (
                f"handler_options[{name!r}] must be a string, a number or a boolean "
                f"(a mapping for log_group_tags), not {kind}"
            )
            raise ConfigurationError(message)
    return plain
