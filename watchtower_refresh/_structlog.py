"""structlog in front of stdlib logging, with events shipped as JSON objects.

``configure_structlog()`` makes structlog hand each event dict to stdlib logging as the
record's message. Our handler (and ``LocalTimeFormatter``) serialise a dict message as one
JSON object, so CloudWatch Logs Insights sees every key as a field:
``fields level, event, request_id``. structlog is imported only here, when called.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, MutableMapping
from typing import Any

from ._formatter import format_timestamp, resolve_zone
from ._trace import current, in_lambda

__all__ = ["configure_structlog"]

EventDict = MutableMapping[str, Any]
Processor = Any  # structlog's processor type; structlog may not be installed


def _require_structlog() -> Any:
    try:
        import structlog
    except ImportError:
        message = "configure_structlog needs structlog: pip install 'watchtower-refresh[structlog]'"
        raise ImportError(message) from None
    return structlog


class _Timestamper:
    """Add ``timestamp`` in the configured zone, formatted as ``LocalTimeFormatter`` does."""

    def __init__(self, zone: datetime.tzinfo | None) -> None:
        self.zone = zone

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault(
            "timestamp",
            format_timestamp(datetime.datetime.now(datetime.timezone.utc).timestamp(), self.zone),
        )
        return event_dict


class _TraceContext:
    """Add ``trace_id``, ``span_id`` and ``xray_trace_id`` when the event is logged in a trace."""

    def __init__(self, lambda_runtime: bool) -> None:
        self.lambda_runtime = lambda_runtime

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        try:
            fields = current(self.lambda_runtime)
        except Exception:  # a tracing library's fault must not cost the event
            return event_dict
        for name, value in fields.items():
            if value:
                event_dict.setdefault(name, value)
        return event_dict


def _to_stdlib(
    logger: Any, method_name: str, event_dict: EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Pass the whole event dict to stdlib logging as the record's message."""
    return (dict(event_dict),), {}


def configure_structlog(
    *,
    tz: str | datetime.tzinfo | None = None,
    processors: Iterable[Processor] = (),
    cache_logger_on_first_use: bool = True,
    trace_context: bool = True,
) -> None:
    """Configure structlog so that its events reach stdlib logging as JSON-ready dicts.

    Each event carries ``event``, ``level``, ``logger``, ``timestamp`` (ISO 8601 with
    milliseconds and the offset of ``tz``), everything bound with
    ``structlog.contextvars.bind_contextvars`` (a request id, say), and ``exception`` when
    there is one. Inside an OpenTelemetry span it also carries ``trace_id``, ``span_id``
    and ``xray_trace_id`` (in Lambda, ``xray_trace_id`` of the invocation even without
    one). Configure stdlib logging (for example with ``configure_logging``) as well.

    Args:
        tz: IANA zone for ``timestamp``; default the process's local zone.
        processors: Extra processors, run after the built-in ones and before hand-off.
        cache_logger_on_first_use: Passed to ``structlog.configure``.
        trace_context: Add the trace ids (the default); False leaves them out.

    Raises:
        ImportError: structlog is not installed; the message names the extra.
        ConfigurationError: ``tz`` is not a known zone.
    """
    structlog = _require_structlog()
    zone = resolve_zone(tz)
    tracing = [_TraceContext(in_lambda())] if trace_context else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            _Timestamper(zone),
            *tracing,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *processors,
            _to_stdlib,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache_logger_on_first_use,
    )
