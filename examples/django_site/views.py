"""Views of the example project."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse

logger = logging.getLogger("orders")


def read_order(request: HttpRequest, order_id: int) -> JsonResponse:
    """Return an order, logging that it was read; order 0 does not exist."""
    logger.debug("looking up order %d", order_id)  # shipped only if the request fails
    if order_id == 0:
        logger.error("order %d not found", order_id)
        return JsonResponse({"error": "no such order"}, status=404)
    logger.info("order %d read", order_id)
    return JsonResponse({"order": order_id})
