"""A FastAPI app whose logs go to CloudWatch Logs, with a request id on every record.

Run it with uvicorn's ``log_config`` (uvicorn applies it with ``dictConfig``):

    uvicorn app:app --log-config log_config.yaml

The middleware puts the request id (``X-Request-ID`` or a new one) in a context variable;
``RequestIdFilter`` copies it onto every record, and the JSON formatter writes it as a field:
``fields @timestamp, level, message, request_id`` in CloudWatch Logs Insights.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
logger = logging.getLogger("orders")
app = FastAPI()


class RequestIdFilter(logging.Filter):
    """Copy the current request id onto each record as ``record.request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


@app.middleware("http")
async def assign_request_id(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Bind a request id for the duration of the request and echo it in the response."""
    token = request_id.set(request.headers.get("x-request-id") or uuid.uuid4().hex)
    try:
        response = await call_next(request)
        response.headers["x-request-id"] = request_id.get()
        return response
    finally:
        request_id.reset(token)


@app.get("/orders/{order_id}")
async def read_order(order_id: int) -> dict[str, int]:
    """Return an order, logging that it was read."""
    logger.info("order %d read", order_id)
    return {"order": order_id}
