"""Every option of the handler, parsed once into a frozen ``HandlerOptions``.

Options may arrive typed or as text (``dictConfig`` from YAML, JSON or INI; environment
variables through ``logging_config``). ``HandlerOptions.parse`` checks each one, resolves
watchtower's older names, and decides where credentials come from, so that a typo fails at
configuration time and nothing later has to look at raw arguments. The handler, its pipeline
and ``watchtower-refresh check`` read the result; none of it changes afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import watchtower

from ._aws import SessionOptions, model
from ._aws.entity import parse as parse_entity
from ._compat import watchtower_json_default
from ._core.events import EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from ._exceptions import ConfigurationError
from ._options import (
    KMS_KEY_PATTERN,
    KMS_KEY_RULE,
    LOG_GROUP_PATTERN,
    LOG_GROUP_RULE,
    as_bool,
    as_callable,
    as_float,
    as_int,
    as_optional_str,
    as_retention_days,
    as_tags,
    check_pattern,
)
from ._spool import DEFAULT_MAX_BYTES as DEFAULT_SPOOL_MAX_BYTES
from ._streams import check_template

__all__ = [
    "DEFAULT_BUFFER_MAX_BYTES",
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_LOG_GROUP_NAME",
    "DEFAULT_LOG_STREAM_NAME",
    "DEFAULT_METRICS_NAMESPACE",
    "DEFAULT_QUEUE_MAX_BYTES",
    "DEFAULT_QUEUE_MAX_EVENTS",
    "DEFAULT_SPOOL_MAX_BYTES",
    "LARGE_EVENTS",
    "MIN_SPOOL_BYTES",
    "HandlerOptions",
]

DEFAULT_LOG_GROUP_NAME = "watchtower"
DEFAULT_LOG_STREAM_NAME = watchtower.DEFAULT_LOG_STREAM_NAME
DEFAULT_QUEUE_MAX_EVENTS = 100_000
DEFAULT_QUEUE_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BUFFER_MAX_BYTES = 256 * 1024
MIN_BUFFER_BYTES = 1024
DEFAULT_FLUSH_TIMEOUT = 10.0
MIN_SPOOL_BYTES = 64 * 1024
DEFAULT_METRICS_NAMESPACE = "WatchtowerRefresh"
MIN_METRICS_INTERVAL = 1.0
# CloudWatch metric namespaces: 1 to 255 of these characters, not starting with ':' nor
# with the 'AWS/' that AWS keeps for its own services.
_NAMESPACE_PATTERN = r"(?!AWS/)[A-Za-z0-9._/#-][A-Za-z0-9._/#: -]{0,254}"
_NAMESPACE_RULE = (
    "1 to 255 characters of A-Z, a-z, 0-9 and ._/#:- or space, not starting with ':' or 'AWS/'"
)


LARGE_EVENTS = ("truncate", "split")
"""What ``large_events`` may say of a message over ``max_message_size``; the first is the
default."""

_CREDENTIAL_OPTIONS = (
    "role_arn",
    "role_session_name",
    "duration_seconds",
    "external_id",
    "profile_name",
    "session_factory",
)


@dataclasses.dataclass(frozen=True)
class HandlerOptions:
    """The handler's options, checked; see ``RefreshingCloudWatchLogHandler`` for each."""

    log_group_name: str
    log_stream_name: str
    use_queues: bool
    send_interval: float
    max_batch_size: int
    max_batch_count: int
    max_message_size: int
    large_events: str
    """``truncate`` or ``split`` (``_core.parts``)."""
    create_log_group: bool
    create_log_stream: bool
    log_group_tags: Mapping[str, str]
    log_group_retention_days: int | None
    kms_key_id: str | None
    log_group_class: str | None
    deletion_protection: bool
    entity: Mapping[str, Mapping[str, str]] | str | None
    """None, ``"auto"`` (built on the sender's thread), or the entity as sent."""
    queue_max_events: int
    queue_max_bytes: int
    flush_timeout: float
    handle_signals: bool
    drop_markers: bool
    """Write a marker to a stream that lost records (``_core.markers``)."""
    spool_dir: str | None
    spool_max_bytes: int
    spool_fsync: bool
    region_name: str | None
    endpoint_url: str | None
    trace_context: bool
    """Give records the ids of the current trace (``_trace``)."""
    buffer_at: int | None
    """Hold records at or below this level in ``log_buffer()`` scopes; None: never."""
    buffer_max_bytes: int
    buffer_sample_rate: float
    metrics_interval: float | None
    """Seconds between two self-metrics events (``_delivery.metrics``); None: none."""
    metrics_namespace: str
    json_serialize_default: Callable[[Any], Any] | None
    """As given: None means watchtower's own (see ``serializer``)."""
    boto3_client: Any = dataclasses.field(repr=False)
    """A ready ``logs`` client, used as it is, or None."""
    session_factory: Callable[[], boto3.Session] = dataclasses.field(repr=False)
    """Builds the session the client comes from (called at first delivery)."""

    @property
    def serializer(self) -> Callable[[Any], Any]:
        """The ``default`` of ``json.dumps`` for dict messages."""
        return self.json_serialize_default or watchtower_json_default()

    @classmethod
    def parse(cls, given: Mapping[str, Any]) -> HandlerOptions:
        """Check the handler's keyword arguments (all of them but ``level``).

        Raises:
            ConfigurationError: An option is invalid, or two exclude each other.
        """
        group = _pick_alias("log_group_name", given, DEFAULT_LOG_GROUP_NAME, "log_group")
        template = _pick_alias("log_stream_name", given, DEFAULT_LOG_STREAM_NAME, "stream_name")
        max_message_size = as_int(
            "max_message_size",
            given["max_message_size"],
            minimum=EVENT_OVERHEAD + 64,
            maximum=MAX_EVENT_BYTES,
        )
        flush_timeout = as_float("flush_timeout", given["flush_timeout"], minimum=0.0)
        region_name = as_optional_str("region_name", given["region_name"])
        return cls(
            log_group_name=check_pattern(
                "log_group_name", str(group), LOG_GROUP_PATTERN, LOG_GROUP_RULE
            ),
            log_stream_name=check_template(str(template)),
            use_queues=as_bool("use_queues", given["use_queues"]),
            **_batching(given, max_message_size),
            create_log_group=as_bool("create_log_group", given["create_log_group"]),
            create_log_stream=as_bool("create_log_stream", given["create_log_stream"]),
            log_group_tags=as_tags("log_group_tags", given["log_group_tags"]),
            log_group_retention_days=as_retention_days(
                "log_group_retention_days", given["log_group_retention_days"]
            ),
            **_group_settings(given),
            entity=_entity(given["entity"]),
            queue_max_events=as_int("queue_max_events", given["queue_max_events"], minimum=1),
            queue_max_bytes=as_int(
                "queue_max_bytes", given["queue_max_bytes"], minimum=max_message_size
            ),
            flush_timeout=flush_timeout,
            handle_signals=as_bool("handle_signals", given["handle_signals"]),
            drop_markers=as_bool("drop_markers", given["drop_markers"]),
            **_spool(given),
            region_name=region_name,
            endpoint_url=as_optional_str("endpoint_url", given["endpoint_url"]),
            trace_context=as_bool("trace_context", given["trace_context"]),
            **_buffering(given),
            **_self_metrics(given),
            json_serialize_default=as_callable(
                "json_serialize_default", given["json_serialize_default"]
            ),
            boto3_client=given["boto3_client"],
            session_factory=_session_factory(given, region_name, flush_timeout),
        )


def _batching(given: Mapping[str, Any], max_message_size: int) -> dict[str, Any]:
    """``send_interval``, ``max_batch_size``, ``max_batch_count``, ``max_message_size``
    (checked already) and ``large_events``: how records are batched."""
    return {
        "send_interval": as_float("send_interval", given["send_interval"], minimum=0.0),
        "max_batch_size": as_int(
            "max_batch_size",
            given["max_batch_size"],
            minimum=EVENT_OVERHEAD + 1,
            maximum=MAX_BATCH_BYTES,
        ),
        "max_batch_count": as_int(
            "max_batch_count", given["max_batch_count"], minimum=1, maximum=MAX_BATCH_EVENTS
        ),
        "max_message_size": max_message_size,
        "large_events": _large_events(given["large_events"]),
    }


def _spool(given: Mapping[str, Any]) -> dict[str, Any]:
    """``spool_dir`` (a string or a path), ``spool_max_bytes`` and ``spool_fsync``."""
    spool_dir = given["spool_dir"]
    if isinstance(spool_dir, os.PathLike):
        spool_dir = os.fspath(spool_dir)
    return {
        "spool_dir": as_optional_str("spool_dir", spool_dir),
        "spool_max_bytes": as_int(
            "spool_max_bytes", given["spool_max_bytes"], minimum=MIN_SPOOL_BYTES
        ),
        "spool_fsync": as_bool("spool_fsync", given["spool_fsync"]),
    }


def _buffering(given: Mapping[str, Any]) -> dict[str, Any]:
    """``buffer_at``, ``buffer_max_bytes`` and ``buffer_sample_rate``: ``log_buffer()``."""
    return {
        "buffer_at": _buffer_level(given["buffer_at"]),
        "buffer_max_bytes": as_int(
            "buffer_max_bytes", given["buffer_max_bytes"], minimum=MIN_BUFFER_BYTES
        ),
        "buffer_sample_rate": as_float(
            "buffer_sample_rate", given["buffer_sample_rate"], minimum=0.0, maximum=1.0
        ),
    }


def _self_metrics(given: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics_interval`` and ``metrics_namespace``: the handler's own metrics."""
    return {
        "metrics_interval": _metrics_interval(given["metrics_interval"]),
        "metrics_namespace": check_pattern(
            "metrics_namespace",
            str(given["metrics_namespace"]).strip(),
            _NAMESPACE_PATTERN,
            _NAMESPACE_RULE,
        ),
    }


def _buffer_level(value: object) -> int | None:
    """``buffer_at``: a level name or number below ERROR, or None (or ``off``) for none."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    level: object = value
    if isinstance(value, str):
        text = value.strip().upper()
        level = int(text) if text.isdigit() else logging.getLevelName(text)
    if isinstance(level, int) and not isinstance(level, bool) and 0 < level < logging.ERROR:
        return level
    message = f"buffer_at must be a level below ERROR (DEBUG, INFO, WARNING) or off, not {value!r}"
    raise ConfigurationError(message)


def _metrics_interval(value: object) -> float | None:
    """``metrics_interval``: seconds, at least ``MIN_METRICS_INTERVAL``; None, ``0`` or
    ``off`` for no self-metrics."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    try:
        seconds = as_float("metrics_interval", value, minimum=0.0)
    except ConfigurationError:
        seconds = -1.0
    if seconds == 0:
        return None
    if seconds < MIN_METRICS_INTERVAL:
        message = (
            f"metrics_interval must be a number of seconds, at least {MIN_METRICS_INTERVAL:g}, "
            f"or 0 (or off) for no self-metrics, not {value!r}"
        )
        raise ConfigurationError(message)
    return seconds


def _large_events(value: object) -> str:
    """``large_events``: ``truncate`` or ``split``, in any case."""
    if isinstance(value, str) and value.strip().lower() in LARGE_EVENTS:
        return value.strip().lower()
    message = f"large_events must be {' or '.join(LARGE_EVENTS)}, not {value!r}"
    raise ConfigurationError(message)


def _group_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """``kms_key_id``, ``log_group_class`` and ``deletion_protection``, checked against the
    installed botocore's model of CreateLogGroup (its parameters and classes)."""
    settings: dict[str, Any] = {
        "kms_key_id": as_optional_str("kms_key_id", given["kms_key_id"]),
        "log_group_class": as_optional_str("log_group_class", given["log_group_class"]),
        "deletion_protection": as_bool("deletion_protection", given["deletion_protection"]),
    }
    kms_key_id = settings["kms_key_id"]
    if kms_key_id is not None and not re.fullmatch(KMS_KEY_PATTERN, kms_key_id, re.ASCII):
        message = f"kms_key_id {kms_key_id!r} is invalid: {KMS_KEY_RULE}"
        raise ConfigurationError(message)
    if settings["log_group_class"] is not None:
        settings["log_group_class"] = group_class = settings["log_group_class"].upper()
        classes = model.log_group_classes()
        if group_class not in classes:
            known = ", ".join(classes) or "none"
            message = (
                f"log_group_class must be one of {known} (the classes botocore "
                f"{model.version()} knows), not {group_class!r}"
            )
            raise ConfigurationError(message)
    known_parameters = model.create_group_parameters()
    named = [name for name, value in settings.items() if value]
    for name in named:
        parameter = model.CREATE_GROUP_PARAMETERS[name]
        if parameter not in known_parameters:
            message = (
                f"{name} needs CreateLogGroup's {parameter}, which botocore "
                f"{model.version()} does not know: upgrade botocore (and boto3)"
            )
            raise ConfigurationError(message)
    if named and not as_bool("create_log_group", given["create_log_group"]):
        message = (
            f"{', '.join(named)} apply when the handler creates the log group: "
            "they need create_log_group"
        )
        raise ConfigurationError(message)
    return settings


def _entity(value: object) -> Mapping[str, Mapping[str, str]] | str | None:
    """``entity``, checked; PutLogEvents' ``entity`` must be in the installed model."""
    entity = parse_entity("entity", value)
    if entity is not None and "entity" not in model.put_parameters():
        message = (
            f"entity needs PutLogEvents' entity, which botocore {model.version()} does not "
            "know: upgrade botocore (and boto3)"
        )
        raise ConfigurationError(message)
    return entity


def _pick_alias(name: str, given: Mapping[str, Any], default: str | None, old_name: str) -> Any:
    """Return the value of an option that watchtower also accepts under an older name."""
    value, old_value = given[name], given[old_name]
    if old_value is None:
        return value
    if value != default:
        message = f"give {name} or its older name {old_name}, not both"
        raise ConfigurationError(message)
    if old_name != "boto3_profile_name":
        # stacklevel: parse, the handler's __init__, then the code that built the handler
        warnings.warn(f"{old_name} is deprecated: use {name}", DeprecationWarning, stacklevel=5)
    return old_value


def _session_factory(
    given: Mapping[str, Any], region_name: str | None, flush_timeout: float
) -> Callable[[], boto3.Session]:
    """Where credentials come from: one source, checked now, built at first delivery."""
    options = {key: given[key] for key in _CREDENTIAL_OPTIONS}
    options["profile_name"] = _pick_alias("profile_name", given, None, "boto3_profile_name")
    factory = options["session_factory"] = as_callable("session_factory", given["session_factory"])
    named = [key for key, value in options.items() if value not in (None, "")]
    if given["boto3_client"] is not None and named:
        message = f"boto3_client excludes {', '.join(named)}: give one source of credentials"
        raise ConfigurationError(message)
    if factory is not None:
        if len(named) > 1:
            others = ", ".join(named[:-1])
            message = f"session_factory excludes {others}: give one source of credentials"
            raise ConfigurationError(message)
        return factory
    return SessionOptions.parse(
        options["role_arn"],
        role_session_name=options["role_session_name"],
        duration_seconds=options["duration_seconds"],
        external_id=options["external_id"],
        region_name=region_name,
        profile_name=options["profile_name"],
        sts_timeout=flush_timeout,
    ).build
