"""The trace a record belongs to: OpenTelemetry's current span, or Lambda's X-Ray header.

A record logged inside a valid OpenTelemetry span gets three attributes: ``trace_id`` (32
lowercase hex digits), ``span_id`` (16) and ``xray_trace_id``, the same trace id in X-Ray's
form (``1-`` + its first 8 digits + ``-`` + the other 24). In Lambda without a span,
``xray_trace_id`` is the ``Root`` of ``_X_AMZN_TRACE_ID``, which the runtime sets for each
invocation. Otherwise all three are empty strings, so that a text format with
``%(trace_id)s`` still works (``LocalTimeFormatter`` also defaults them to empty, for any
handler); JSON output leaves empty ones out (``present``).

OpenTelemetry is never imported here: a span can only be current if the application has
imported ``opentelemetry.trace`` already, so it is looked up in ``sys.modules`` at each
record (a process that imports it late is served from then on). Outside a span the cost
per record is that look-up and one ``get_current_span()``; the ids of the last span seen
are kept, so consecutive records of one span format nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from ._compat import format_string

__all__ = [
    "LAMBDA_TRACE_VARIABLE",
    "OTEL_TRACE",
    "TRACE_FIELDS",
    "TraceContext",
    "current",
    "in_lambda",
    "names_trace_fields",
    "present",
]

TRACE_FIELDS = ("trace_id", "span_id", "xray_trace_id")
OTEL_TRACE = "opentelemetry.trace"  # loaded by any application that makes spans
LAMBDA_TRACE_VARIABLE = "_X_AMZN_TRACE_ID"
_BLANK: Mapping[str, str] = dict.fromkeys(TRACE_FIELDS, "")
_modules = sys.modules
_environ = os.environ
# The last span's ids and the last Lambda header's: (trace id, span id, fields) and
# (header, fields). Replaced whole, so a thread never sees half of one.
_last_span: tuple[int, int, Mapping[str, str]] = (0, 0, _BLANK)
_last_header: tuple[str, Mapping[str, str]] = ("", _BLANK)


def in_lambda(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is an AWS Lambda function (the runtime sets the function's name)."""
    return "AWS_LAMBDA_FUNCTION_NAME" in (_environ if environ is None else environ)


def current(lambda_runtime: bool) -> Mapping[str, str]:
    """The trace fields for a record logged now, in this thread or task (see the module).

    Args:
        lambda_runtime: Whether to fall back on ``_X_AMZN_TRACE_ID`` outside a span.

    Returns:
        ``trace_id``, ``span_id`` and ``xray_trace_id``; empty strings where unknown. The
        mapping is shared: do not change it.
    """
    tracing = _modules.get(OTEL_TRACE)
    if tracing is not None:
        context = tracing.get_current_span().get_span_context()
        if context.is_valid:
            global _last_span
            last = _last_span
            if last[0] == context.trace_id and last[1] == context.span_id:
                return last[2]
            fields = _span_fields(context.trace_id, context.span_id)
            _last_span = (context.trace_id, context.span_id, fields)
            return fields
    if lambda_runtime:
        header = _environ.get(LAMBDA_TRACE_VARIABLE)
        if header:
            return _header_fields(header)
    return _BLANK


def _span_fields(trace_id: int, span_id: int) -> Mapping[str, str]:
    hex_id = format(trace_id, "032x")
    return {
        "trace_id": hex_id,
        "span_id": format(span_id, "016x"),
        "xray_trace_id": f"1-{hex_id[:8]}-{hex_id[8:]}",
    }


def _header_fields(header: str) -> Mapping[str, str]:
    """``xray_trace_id`` from an X-Ray header, ``Root=1-...;Parent=...;Sampled=...``."""
    global _last_header
    last = _last_header
    if last[0] == header:
        return last[1]
    root = ""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            root = value.strip()
            break
    fields = {**_BLANK, "xray_trace_id": root} if root else _BLANK
    _last_header = (header, fields)
    return fields


class TraceContext:
    """Gives records their trace attributes, for one handler (see the module).

    The handler calls ``annotate`` only when something may be there to add: when
    ``opentelemetry.trace`` is loaded (``OTEL_TRACE`` in ``sys.modules``) or when its
    formatter is not ``plain``, a formatter known to need no empty fields outside Lambda.
    Outside a trace the empty attributes are set only for a formatter whose format names
    one of them, since adding attributes to a record costs as much as the rest of the
    look-up; a formatter that is not a ``logging.Formatter`` gets them in any case. A record
    that has a ``trace_id`` already keeps it (one of our handlers saw it first, a filter
    set it, or ``extra=`` did); only the other two are filled in if missing.

    Args:
        lambda_runtime: Whether to read the X-Ray header of Lambda's invocations.
    """

    __slots__ = ("_known", "lambda_runtime", "plain")

    def __init__(self, lambda_runtime: bool) -> None:
        self.lambda_runtime = lambda_runtime
        self.plain: object = None
        """A formatter that needs no empty fields; never set in Lambda (the header may)."""
        self._known: tuple[object, bool] = (None, False)  # a formatter, whether it names one

    def annotate(self, record: logging.LogRecord, formatter: object) -> None:
        """Give ``record`` the trace fields it is logged in, for ``formatter`` to format."""
        attributes = record.__dict__
        if "trace_id" in attributes:
            for name in TRACE_FIELDS:
                attributes.setdefault(name, "")
            return
        try:
            fields = current(self.lambda_runtime)
        except Exception:  # a tracing library's fault must not cost the record
            fields = _BLANK
        if fields is not _BLANK:
            attributes.update(fields)
            return
        known = self._known
        if known[0] is not formatter:
            known = self._known = (formatter, names_trace_fields(formatter))
        if known[1]:
            attributes.update(_BLANK)
        elif not self.lambda_runtime:
            self.plain = formatter


def names_trace_fields(formatter: object) -> bool:
    """Whether ``formatter`` may read a trace attribute (see ``annotator``)."""
    if not isinstance(formatter, logging.Formatter):
        return True
    text = format_string(formatter)
    return text is None or any(name in text for name in TRACE_FIELDS)


def present(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The trace fields of a record's attributes that hold a value (for JSON output)."""
    return {name: attributes[name] for name in TRACE_FIELDS if attributes.get(name)}
