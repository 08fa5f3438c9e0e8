"""Views of the example project."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse

logger = logging.getLogger("orders")


def read_order(request: HttpRequest, order_id: int) -> JsonResponse:
    """Return an order, logging that it was read."""
    logger.info("order %d read", order_id)
    return JsonResponse({"order": order_id})
