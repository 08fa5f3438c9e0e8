"""``LocalTimeFormatter``: timestamps in a chosen zone, with the offset, and JSON on request."""

from __future__ import annotations

import datetime
import json
import logging
import time
import zoneinfo
from collections.abc import Callable, Mapping
from sys import is_finalizing as _finalizing
from typing import Any, Literal

import watchtower

from ._core.markers import PLAIN, Style
from ._exceptions import ConfigurationError
from ._options import as_bool, as_callable
from ._trace import TRACE_FIELDS, present

__all__ = [
    "RESERVED_FIELDS",
    "LocalTimeFormatter",
    "format_timestamp",
    "marker_style",
    "resolve_zone",
]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
# The fields as_json writes about the record itself; nothing a message carries replaces them.
RESERVED_FIELDS = ("timestamp", "level", "logger")
RENAMED_PREFIX = "msg_"


def resolve_zone(tz: str | datetime.tzinfo | None) -> datetime.tzinfo | None:
    """Return the zone for ``tz``: an IANA name, a ``tzinfo``, or None for the local zone.

    Raises:
        ConfigurationError: The name is not a known zone.
    """
    if tz is None or isinstance(tz, datetime.tzinfo):
        return tz
    name = str(tz).strip()
    if name in ("", "local"):
        return None
    if name.upper() in ("UTC", "Z"):
        return datetime.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        message = (
            f"tz {name!r} is not a known time zone: use an IANA name such as 'Asia/Tokyo' "
            "or 'Europe/Berlin' (pip install tzdata where the system has no zone database)"
        )
        raise ConfigurationError(message) from None


def format_timestamp(
    created: float, zone: datetime.tzinfo | None, datefmt: str | None = None
) -> str:
    """Format a record time (seconds since the epoch) in ``zone`` (None: the local zone).

    Without ``datefmt``: ISO 8601 with milliseconds and the offset,
    ``2026-11-22T07:28:47.123+09:00``. With it: ``strftime``, where ``%z`` and ``%Z`` work.
    """
    if zone is None and _finalizing():
        return _local_time_at_exit(created, datefmt)
    moment = datetime.datetime.fromtimestamp(created, zone or datetime.timezone.utc)
    if zone is None:
        moment = moment.astimezone()  # the process's local zone, as TZ sets it
    if datefmt:
        return moment.strftime(datefmt)
    return moment.isoformat(timespec="milliseconds")


def _local_time_at_exit(created: float, datefmt: str | None) -> str:
    """``format_timestamp`` in the local zone without ``datetime``, for a finalizing process.

    CPython 3.13.0's ``datetime`` crashes the interpreter when it makes an object at exit
    (an asyncio task destroyed while pending logs an error then); ``time`` does not.
    """
    local = time.localtime(created)
    if datefmt:
        return time.strftime(datefmt, local)
    offset, seconds = divmod(abs(local.tm_gmtoff), 3600)
    sign = "-" if local.tm_gmtoff < 0 else "+"
    milliseconds = int(created % 1 * 1000)
    return (
        f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}.{milliseconds:03d}"
        f"{sign}{offset:02d}:{seconds // 60:02d}"
    )


class LocalTimeFormatter(watchtower.CloudWatchLogFormatter):
    """A formatter whose ``%(asctime)s`` is in a chosen zone and carries its UTC offset.

    Keeps the stdlib positional parameters and adds its options keyword-only, so it works
    from ``dictConfig`` as ``"()": "watchtower_refresh.LocalTimeFormatter"`` with ``tz``.
    Dict messages are serialised to JSON as watchtower's formatter does.

    Args:
        fmt: Format string, as for ``logging.Formatter``.
        datefmt: ``strftime`` format for ``%(asctime)s``; ``%z`` and ``%Z`` work. Without
            it: ISO 8601 with milliseconds and the offset (``2026-11-22T07:28:47.123+09:00``).
        style: ``%``, ``{`` or ``$``.
        validate: Check ``fmt`` against ``style``.
        defaults: Default values for custom fields in ``fmt``.
        tz: An IANA zone name (``"Asia/Tokyo"``), a ``tzinfo``, ``"UTC"``, or None for the
            process's local zone (as ``TZ`` sets it). An unknown name raises
            ``ConfigurationError`` here, when logging is configured.
        as_json: Format every record as one JSON object with ``timestamp``, ``level``,
            ``logger`` and ``message`` (the keys of a dict message, and ``extra=`` fields,
            at top level), which CloudWatch Logs Insights sees as fields. ``timestamp``,
            ``level`` and ``logger`` always describe the record: a dict-message key or an
            ``extra=`` field of the same name is written as ``msg_<name>`` instead, unless
            it says the same thing (the same value; for ``level``, in any case), when it is
            left out. The trace ids the handler adds (``trace_id``, ``span_id``,
            ``xray_trace_id``) are written only when they hold a value, here and in a dict
            message in text mode.
        json_serialize_default: ``default`` for ``json.dumps``, or its dotted path.
        add_log_record_attrs: watchtower's option: record attributes (``filename``,
            ``process``...) added to dict messages, in text and in JSON mode. In text mode a
            plain message becomes ``{"msg": ...}`` with them, as in watchtower. The record
            itself is never changed, so another handler sees the message as logged.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        validate: bool = True,
        *,
        defaults: Mapping[str, Any] | None = None,
        tz: str | datetime.tzinfo | None = None,
        as_json: bool | str = False,
        json_serialize_default: Callable[[Any], Any] | str | None = None,
        add_log_record_attrs: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        serializer = as_callable("json_serialize_default", json_serialize_default)
        super().__init__(
            fmt,
            datefmt,
            style,
            validate,
            defaults=_with_trace_defaults(fmt, defaults),
            json_serialize_default=serializer,
            # watchtower annotates a 1-tuple; any tuple of attribute names works.
            add_log_record_attrs=tuple(add_log_record_attrs) if add_log_record_attrs else None,  # type: ignore[arg-type]
        )
        self.zone = resolve_zone(tz)
        self.as_json = as_bool("as_json", as_json)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Return the record's time in the formatter's zone (see the class docstring)."""
        return format_timestamp(record.created, self.zone, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as text, or as one JSON object with ``as_json``.

        Unlike watchtower's formatter, this one never assigns to ``record.msg``.
        """
        if self.as_json:
            return self._format_json(record)
        message = record.msg
        if self.add_log_record_attrs:
            document = (
                dict(message) if isinstance(message, Mapping) else {"msg": record.getMessage()}
            )
            for name in self.add_log_record_attrs:
                if name != "msg":
                    document[name] = getattr(record, name, None)
            return json.dumps(document, default=self.json_serialize_default)
        if isinstance(message, Mapping):
            trace = present(vars(record))
            if trace:  # the ids join a dict message as they join a JSON record
                message = {**message, **{k: v for k, v in trace.items() if k not in message}}
            return json.dumps(message, default=self.json_serialize_default)
        return logging.Formatter.format(self, record)

    def _format_json(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "logger": record.name,
        }
        fields: dict[str, Any] = {}
        if isinstance(record.msg, Mapping):
            fields.update(record.msg)
        else:
            document["message"] = record.getMessage()
        for name in self.add_log_record_attrs or ():
            if name != "msg":
                fields.setdefault(name, getattr(record, name, None))
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and (value or key not in TRACE_FIELDS):
                fields.setdefault(key, value)
        for key, value in fields.items():
            if key in RESERVED_FIELDS:
                if _same(key, document[key], value):
                    continue
                key = RENAMED_PREFIX + key
            document.setdefault(key, value)
        if record.exc_info:
            document.setdefault("exception", self.formatException(record.exc_info))
        elif record.exc_text:  # formatted earlier: botocore's records, by the redaction filter
            document.setdefault("exception", record.exc_text)
        if record.stack_info:
            document.setdefault("stack", self.formatStack(record.stack_info))
        return json.dumps(document, default=self.json_serialize_default, ensure_ascii=False)


def marker_style(formatter: logging.Formatter | None) -> Style:
    """How ``formatter`` writes records, so that a drop marker written among them reads
    like them (``_core.markers``): JSON, zone and date format of a ``LocalTimeFormatter``;
    plain text in UTC for any other."""
    if isinstance(formatter, LocalTimeFormatter):
        return Style(formatter.as_json, formatter.zone, formatter.datefmt)
    return PLAIN


def _with_trace_defaults(
    fmt: str | None, defaults: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """``defaults`` plus empty trace fields when ``fmt`` names one: ``%(trace_id)s`` then
    works for records no handler of ours has seen (a console handler's). Only then, since
    defaults cost a dict merge per record."""
    if fmt is None or not any(name in fmt for name in TRACE_FIELDS):
        return defaults
    return {**dict.fromkeys(TRACE_FIELDS, ""), **(defaults or {})}


def _same(key: str, ours: str, theirs: object) -> bool:
    if key == "level" and isinstance(theirs, str):
        return ours == theirs.upper()
    return ours == theirs
