"""Quick start: configure logging once, at import, with a role that is assumed and refreshed.

Run against real AWS with a role your credentials may assume:

    ROLE_ARN=arn:aws:iam::123456789012:role/app-logs AWS_REGION=eu-west-1 python quickstart.py
"""

from __future__ import annotations

import logging
import logging.config
import os

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # watchtower's formatter: text records as formatted, dict records as JSON objects
        "plain": {
            "()": "watchtower.CloudWatchLogFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "cloudwatch": {
            "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
            "log_group_name": "/app/orders",
            "log_stream_name": "{machine_name}/{program_name}",
            "role_arn": os.environ.get("ROLE_ARN", "arn:aws:iam::123456789012:role/app-logs"),
            "duration_seconds": 900,
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["cloudwatch"], "level": "INFO"},
}

logging.config.dictConfig(LOGGING)  # no network call here: safe at import time
logger = logging.getLogger("orders")

if __name__ == "__main__":
    logger.info("order %s placed", 1042)
    logger.warning({"order": 1042, "state": "payment pending"})
    # Nothing else to do: pending records are delivered when the interpreter exits.
