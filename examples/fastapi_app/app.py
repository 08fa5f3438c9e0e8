"""A FastAPI app whose logs go to CloudWatch Logs, with a request id on every record.

Run it with uvicorn's ``log_config`` (uvicorn applies it with ``dictConfig``):

    uvicorn app:app --log-config log_config.yaml

``RequestIdMiddleware`` puts the request id (``X-Request-ID`` or a new one) in a context
variable for the whole exchange, response included; ``RequestIdFilter`` copies it onto every
record, and the JSON formatter writes it as a field: ``fields @timestamp, level, message,
request_id`` in CloudWatch Logs Insights.
"""

from __future__ import annotations

import contextvars
import logging
import uuid

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


app = FastAPI()
app.add_middleware(RequestIdMiddleware)


@app.get("/orders/{order_id}")
async def read_order(order_id: int) -> dict[str, int]:
    """Return an order, logging that it was read."""
    logger.info("order %d read", order_id)
    return {"order": order_id}
