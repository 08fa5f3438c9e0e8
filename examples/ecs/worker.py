"""The entry point of the ECS task image: a worker configured from the task definition.

Logging is configured from the WATCHTOWER_REFRESH_* variables of task-definition.json; the
task role (ECS's container credentials) is the source of credentials for role_arn.
"""

from __future__ import annotations

import logging
import os

from watchtower_refresh import configure_logging

configure_logging()
logger = logging.getLogger("orders.worker")


def main() -> None:
    """Process a batch of orders, logging each one."""
    for order in range(int(os.environ.get("ORDERS", "3"))):
        logger.info("order %d processed", order)
    # No close(): records still queued are delivered when the interpreter exits.


if __name__ == "__main__":
    main()
