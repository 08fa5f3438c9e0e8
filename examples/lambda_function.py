"""An AWS Lambda function that logs to CloudWatch Logs through an assumed role.

Configuration happens at import, in the init phase, and makes no network call. The function
sets these variables (no access keys: the execution role is the source of credentials):

    WATCHTOWER_REFRESH_LOG_GROUP=/app/orders-lambda
    WATCHTOWER_REFRESH_ROLE_ARN=arn:aws:iam::123456789012:role/app-logs
    WATCHTOWER_REFRESH_CONSOLE=false     # Lambda already captures stdout/stderr

``@flush_logs`` delivers each invocation's records before the function returns, because
Lambda freezes the process between invocations and a background thread cannot be trusted to
run then. The alternative is ``handler_options={"use_queues": False}``: each record is sent
from the caller's thread, with the same refresh and retry rules.
"""

from __future__ import annotations

import logging
from typing import Any

from watchtower_refresh import configure_logging, flush_logs

configure_logging()
logger = logging.getLogger("orders")


@flush_logs(timeout=2.0)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Handle one order event."""
    logger.info("order %s received", event["order"])
    logger.info({"order": event["order"], "state": "stored"})
    return {"ok": True}
