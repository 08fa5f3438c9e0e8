"""A FastAPI app whose logs go to CloudWatch Logs, with a request id on every record.

Run it with uvicorn's ``log_config`` (uvicorn applies it with ``dictConfig``):

    uvicorn app:app --log-config log_config.yaml

``RequestIdMiddleware`` puts the request id (``X-Request-ID`` or a new one) in a context
variable for the whole exchange, response included; ``RequestIdFilter`` copies it onto every
record, and the JSON formatter writes it as a field: ``fields @timestamp, level, message,
request_id`` in CloudWatch Logs Insights.

``LogBufferMiddleware`` runs each request in an OpenTelemetry span and a ``log_buffer()``
scope: every record carries the span's ``trace_id``, ``span_id`` and ``xray_trace_id``, and
the handler's ``buffer_at: DEBUG`` holds a request's DEBUG records, shipping them only if
the request logs an ERROR (or fails with an exception). Under ADOT's auto-instrumentation
(``opentelemetry-instrument uvicorn ...``) the server span is made for you: keep only the
``log_buffer()`` part.
"""

from __future__ import annotations

import contextvars
import logging
import uuid

from fastapi import FastAPI, HTTPException
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchtower_refresh import log_buffer

if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
    # No tracing configured (ADOT's instrumentation would have): the SDK's own provider,
    # which makes valid spans without exporting them anywhere.
    trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("orders-api")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
logger = logging.getLogger("orders")


class RequestIdFilter(logging.Filter):
    """Copy the current request id onto each record as ``record.request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RequestIdMiddleware:
    """Bind a request id until the response is sent, and echo it in ``X-Request-ID``.

    A pure ASGI middleware rather than ``@app.middleware("http")``: uvicorn writes its
    access-log record while the response is being sent, after such a middleware's
    ``call_next`` has returned and reset the variable. Here the variable is reset only once
    the application, response and access log included, is done with the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", current)
            await send(message)  # uvicorn logs the access line in here

        token = request_id.set(current)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class LogBufferMiddleware:
    """Run each request in a span and a ``log_buffer()`` scope (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with tracer.start_as_current_span(f"{scope['method']} {scope['path']}"), log_buffer():
            await self.app(scope, receive, send)


app = FastAPI()
app.add_middleware(LogBufferMiddleware)
app.add_middleware(RequestIdMiddleware)  # added last: the outermost, around the scope too


@app.get("/orders/{order_id}")
async def read_order(order_id: int) -> dict[str, int]:
    """Return an order, logging that it was read; order 0 does not exist."""
    logger.debug("looking up order %d", order_id)  # shipped only if the request fails
    if order_id == 0:
        logger.error("order %d not found", order_id)
        raise HTTPException(status_code=404, detail="no such order")
    logger.info("order %d read", order_id)
    return {"order": order_id}
