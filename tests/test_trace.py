"""Trace context: the ids of the current OpenTelemetry span, or Lambda's X-Ray trace, in records."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tests.conftest import logger_for
from watchtower_refresh import LocalTimeFormatter, configure_structlog
from watchtower_refresh._trace import TraceContext, current
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
LAMBDA_HEADER = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def tracer() -> trace.Tracer:
    """A tracer of the real SDK, without touching the process's global provider."""
    return TracerProvider().get_tracer("tests")


def ids_of(span: trace.Span) -> dict[str, str]:
    context = span.get_span_context()
    trace_id = f"{context.trace_id:032x}"
    return {
        "trace_id": trace_id,
        "span_id": f"{context.span_id:016x}",
        "xray_trace_id": f"1-{trace_id[:8]}-{trace_id[8:]}",
    }


def trace_fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: event[k] for k in ("trace_id", "span_id", "xray_trace_id") if k in event}


def test_json_records_carry_the_spans_ids_and_none_outside(
    aws: FakeAWS, messages: Read, make_handler: Any, tracer: trace.Tracer
) -> None:
    handler = make_handler("/app/traced")
    handler.setFormatter(LocalTimeFormatter(as_json=True, tz="UTC"))
    log = logger_for(handler)
    log.info("before")
    with tracer.start_as_current_span("request") as outer:
        log.info("in request")
        with tracer.start_as_current_span("query") as inner:
            log.info("in query")
        log.info({"event": "dict message", "order": 7})
    log.info("after")
    handler.close()
    events = {
        e.get("message", e.get("event")): e
        for e in (json.loads(m) for m in messages("/app/traced"))
    }
    assert trace_fields(events["before"]) == {}
    assert trace_fields(events["after"]) == {}
    assert trace_fields(events["in request"]) == ids_of(outer)
    assert trace_fields(events["in query"]) == ids_of(inner)
    assert trace_fields(events["dict message"]) == ids_of(outer)
    assert events["dict message"]["order"] == 7
    assert ids_of(inner)["trace_id"] == ids_of(outer)["trace_id"]
    assert ids_of(inner)["span_id"] != ids_of(outer)["span_id"]
    assert len(ids_of(outer)["xray_trace_id"]) == 35


def test_text_formats_get_the_ids_as_attributes_empty_outside_a_span(
    aws: FakeAWS, messages: Read, make_handler: Any, tracer: trace.Tracer
) -> None:
    handler = make_handler("/app/text")
    handler.setFormatter(
        logging.Formatter("%(message)s trace=%(trace_id)s span=%(span_id)s x=%(xray_trace_id)s")
    )
    log = logger_for(handler)
    with tracer.start_as_current_span("request") as span:
        log.info("inside")
    log.info("outside")
    handler.close()
    ids = ids_of(span)
    assert sorted(messages("/app/text")) == [
        f"inside trace={ids['trace_id']} span={ids['span_id']} x={ids['xray_trace_id']}",
        "outside trace= span= x=",
    ]
    assert handler.stats.dropped == {}


def test_a_dict_message_in_text_mode_carries_them_too(tracer: trace.Tracer) -> None:
    formatter = LocalTimeFormatter()
    record = logging.LogRecord("orders", logging.INFO, __file__, 1, {"event": "paid"}, None, None)
    with tracer.start_as_current_span("request") as span:
        TraceContext(lambda_runtime=False).annotate(record, formatter)
    assert json.loads(formatter.format(record)) == {"event": "paid", **ids_of(span)}


def test_lambda_records_carry_the_invocations_xray_trace(
    aws: FakeAWS, messages: Read, make_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders")
    handler = make_handler("/fn/orders")
    handler.setFormatter(LocalTimeFormatter(as_json=True, tz="UTC"))
    log = logger_for(handler)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_HEADER)
    log.info("first invocation")
    second = "1-6759e988-cd862e3fe1be46a994272794"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={second};Parent=63995c3f42cd8ad8;Sampled=0")
    log.info("second invocation")
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    log.info("no header")
    handler.close()
    events = {e["message"]: e for e in (json.loads(m) for m in messages("/fn/orders"))}
    assert trace_fields(events["first invocation"]) == {"xray_trace_id": ROOT}
    assert trace_fields(events["second invocation"]) == {"xray_trace_id": second}
    assert trace_fields(events["no header"]) == {}


def test_in_lambda_a_span_wins_over_the_header(
    monkeypatch: pytest.MonkeyPatch, tracer: trace.Tracer
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_HEADER)
    with tracer.start_as_current_span("handler") as span:
        assert current(lambda_runtime=True) == ids_of(span)
    assert current(lambda_runtime=True)["xray_trace_id"] == ROOT
    # Outside Lambda the variable means nothing.
    assert current(lambda_runtime=False)["xray_trace_id"] == ""


@pytest.mark.parametrize(
    ("header", "root"),
    [
        (f"Root={ROOT}", ROOT),
        (f"Parent=53995c3f42cd8ad8; Root={ROOT} ;Sampled=1", ROOT),
        ("Parent=53995c3f42cd8ad8;Sampled=1", ""),
        ("garbage", ""),
    ],
)
def test_lambda_header_forms(monkeypatch: pytest.MonkeyPatch, header: str, root: str) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    assert current(lambda_runtime=True)["xray_trace_id"] == root


def test_ids_given_by_the_application_are_kept(tracer: trace.Tracer) -> None:
    record = logging.LogRecord("orders", logging.INFO, __file__, 1, "paid", None, None)
    record.trace_id = "from-the-caller"
    with tracer.start_as_current_span("request"):
        TraceContext(lambda_runtime=False).annotate(record, logging.Formatter())
    assert [vars(record)[k] for k in ("trace_id", "span_id", "xray_trace_id")] == [
        "from-the-caller",
        "",
        "",
    ]


def test_local_time_formatter_defaults_the_fields_for_any_handler() -> None:
    # A console handler that no handler of ours runs before still formats %(trace_id)s.
    formatter = LocalTimeFormatter("%(message)s [%(trace_id)s]")
    record = logging.LogRecord("orders", logging.INFO, __file__, 1, "paid", None, None)
    assert formatter.format(record) == "paid []"


def test_outside_a_trace_only_formats_that_name_the_fields_get_empty_ones() -> None:
    annotate = TraceContext(lambda_runtime=False).annotate

    class Custom:  # not a logging.Formatter: may read anything
        def format(self, record: logging.LogRecord) -> str:
            return str(record.msg)

    seen = {}
    for name, formatter in {
        "plain": logging.Formatter("%(message)s"),
        "json": LocalTimeFormatter(as_json=True),
        "named": logging.Formatter("%(message)s %(span_id)s"),
        "custom": Custom(),
    }.items():
        record = logging.LogRecord("orders", logging.INFO, __file__, 1, "paid", None, None)
        annotate(record, formatter)
        seen[name] = getattr(record, "trace_id", None)
    assert seen == {"plain": None, "json": None, "named": "", "custom": ""}


def test_trace_context_off_leaves_records_alone(
    aws: FakeAWS, make_handler: Any, tracer: trace.Tracer
) -> None:
    handler = make_handler("/app/off", trace_context="false")
    log = logger_for(handler)
    seen: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record)
        return True

    log.addFilter(keep)
    with tracer.start_as_current_span("request"):
        log.info("inside")
    handler.close()
    assert not hasattr(seen[0], "trace_id")


def test_a_tracing_library_that_fails_costs_no_record(
    aws: FakeAWS, messages: Read, make_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("context runtime broke")

    monkeypatch.setattr(trace, "get_current_span", broken)
    handler = make_handler("/app/broken")
    handler.setFormatter(logging.Formatter("%(message)s [%(trace_id)s]"))
    logger_for(handler).info("still here")
    handler.close()
    assert messages("/app/broken") == ["still here []"]


@pytest.fixture
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("reset_structlog")
def test_structlog_events_carry_the_ids(
    aws: FakeAWS, messages: Read, make_handler: Any, tracer: trace.Tracer
) -> None:
    handler = make_handler("/app/structlog")
    handler.setFormatter(LocalTimeFormatter())
    stdlib = logger_for(handler, "structlog")
    configure_structlog(tz="UTC", cache_logger_on_first_use=False)
    log = structlog.get_logger(stdlib.name)
    with tracer.start_as_current_span("request") as span:
        log.info("inside", order=7)
    log.info("outside")
    handler.close()
    events = {e["event"]: e for e in (json.loads(m) for m in messages("/app/structlog"))}
    assert trace_fields(events["inside"]) == ids_of(span)
    assert events["inside"]["order"] == 7
    assert trace_fields(events["outside"]) == {}


def test_opentelemetry_is_never_imported_by_the_handler() -> None:
    # An application without OpenTelemetry pays no import for it, and its records still
    # format with %(trace_id)s.
    code = """
import logging, sys
from watchtower_refresh import RefreshingCloudWatchLogHandler
handler = RefreshingCloudWatchLogHandler(
    "grp", send_interval=3600, flush_timeout=0, endpoint_url="http://127.0.0.1:9"
)
handler.setFormatter(logging.Formatter("%(message)s [%(trace_id)s]"))
record = logging.LogRecord("x", logging.INFO, "app.py", 1, "hello", None, None)
handler.handle(record)
print(handler.format(record), any(m.startswith("opentelemetry") for m in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split("\n")[0] == "hello [] False"
