"""Middleware of the example project: each request in a span and a ``log_buffer()`` scope.

Every record of a request carries the span's ``trace_id`` (the formatter prints it), and the
handler's ``buffer_at: DEBUG`` holds the request's DEBUG records, shipping them only if the
request logs an ERROR (Django logs a view's uncaught exception at ERROR, inside the scope).
Under ADOT's auto-instrumentation the span is made for you: keep only ``log_buffer()``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from watchtower_refresh import log_buffer

if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
    # No tracing configured: the SDK's own provider, which makes valid spans without
    # exporting them anywhere.
    trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("orders-django")


class LogBufferMiddleware:
    """Run each request in a span and a ``log_buffer()`` scope (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with tracer.start_as_current_span(f"{request.method} {request.path}"), log_buffer():
            return self.get_response(request)
