"""A Celery app on the filesystem transport (no broker to run): ``celery -A tasks worker``.

``BROKER_DIR`` holds the queue; each task logs ``task N`` and then appends N to
``DONE_FILE``, so a test knows which records were logged. ``python tasks.py N`` sends
tasks 0 to N-1.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import celery  # type: ignore[import-untyped]
from celery.signals import setup_logging  # type: ignore[import-untyped]

import watchtower_refresh

folder = os.environ["BROKER_DIR"]
app = celery.Celery("tasks", broker="filesystem://")
app.conf.broker_transport_options = {
    "data_folder_in": folder,
    "data_folder_out": folder,
    "polling_interval": 0.01,
}
app.conf.worker_prefetch_multiplier = 4
logger = logging.getLogger("tasks")


@setup_logging.connect  # type: ignore[untyped-decorator]
def configure(**kwargs: Any) -> None:
    """Celery's hook for an application's own logging set-up (it then leaves root alone)."""
    watchtower_refresh.configure_logging(console=False)


@app.task  # type: ignore[untyped-decorator]
def record(n: int) -> None:
    """Log one numbered record, then say so in DONE_FILE."""
    logger.info("task %d in %d", n, os.getpid())
    with open(os.environ["DONE_FILE"], "a") as done:
        done.write(f"{n}\n")


if __name__ == "__main__":
    for n in range(int(sys.argv[1])):
        record.delay(n)
