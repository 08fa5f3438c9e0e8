"""Log stream names: the template watchtower users know, checked once, formatted rarely.

Formatting the template for every record cost more than the rest of ``emit()``, so names are
cached: one name for the process when the template only uses process fields, or one per
logger (and thread, when it appears in the template). Only ``{strftime}`` templates are
formatted per record, from the record's own time.
"""

from __future__ import annotations

import logging
import os
import platform
import string
import sys
from datetime import datetime, timezone

from ._exceptions import ConfigurationError

__all__ = ["STREAM_FIELDS", "StreamNames", "check_template"]

STREAM_FIELDS = frozenset(
    ("machine_name", "program_name", "process_id", "logger_name", "thread_name", "strftime")
)
"""Fields a ``log_stream_name`` template may use (watchtower's)."""
_PER_RECORD_FIELDS = frozenset(("logger_name", "thread_name", "strftime"))
_CACHE_SIZE = 10_000  # names kept, by (logger, thread): many short-lived threads stay bounded


def check_template(template: str) -> str:
    """Return ``template`` if it is a valid stream name template, else raise.

    Raises:
        ConfigurationError: The template is empty, malformed or uses an unknown field.
    """
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError as exc:
        message = f"log_stream_name {template!r} is not a valid template: {exc}"
        raise ConfigurationError(message) from None
    unknown = sorted(set(fields) - STREAM_FIELDS)
    if unknown or not template:
        message = (
            f"log_stream_name {template!r} uses unknown fields {unknown}; "
            f"known fields: {', '.join(sorted(STREAM_FIELDS))}"
        )
        raise ConfigurationError(message)
    return template


class StreamNames:
    """Stream names for records, from one template, in one process.

    ``fixed`` is the name when it does not depend on the record (once known), and ``cache``
    maps logger names to names for the default ``{logger_name}``-style templates: ``emit()``
    reads both inline before calling ``for_record``.

    Args:
        template: A checked ``log_stream_name`` template.
    """

    __slots__ = (
        "_fields",
        "_per_record",
        "_template",
        "_uses_thread",
        "_uses_time",
        "cache",
        "fixed",
    )

    def __init__(self, template: str) -> None:
        self._template = template
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        self._per_record = bool(fields & _PER_RECORD_FIELDS)
        self._uses_time = "strftime" in fields
        self._uses_thread = "thread_name" in fields
        self._fields: dict[str, object] | None = None
        self.fixed: str | None = None
        self.cache: dict[object, str] = {}

    def for_record(self, record: logging.LogRecord) -> str:
        """The stream name for ``record``."""
        if not self._per_record:
            if self.fixed is None:
                self.fixed = self._format(record)
            return self.fixed
        if self._uses_time:
            return self._format(record)
        # Keyed by logger name alone unless the thread matters: emit() looks that up inline.
        key = (record.name, record.threadName) if self._uses_thread else record.name
        name = self.cache.get(key)
        if name is None:
            if len(self.cache) >= _CACHE_SIZE:
                self.cache.clear()
            name = self.cache[key] = self._format(record)
        return name

    def place(self, record: logging.LogRecord) -> tuple[str, int] | None:
        """``record``'s stream and time (milliseconds since the epoch), or None if a broken
        record gives neither: where a marker puts a record that was lost on arrival."""
        try:
            return self.fixed or self.for_record(record), int(record.created * 1000)
        except Exception:
            return None

    def _format(self, record: logging.LogRecord) -> str:
        fields = self._fields
        if fields is None:
            fields = self._fields = {
                "machine_name": platform.node(),
                "program_name": sys.argv[0] if sys.argv else "python",
                "process_id": os.getpid(),
            }
        name = self._template.format(
            **fields,
            logger_name=record.name,
            thread_name=record.threadName,
            strftime=(
                datetime.fromtimestamp(record.created, timezone.utc) if self._uses_time else None
            ),
        )
        return name.replace(":", "-").replace("*", "-")[:512] or "-"
