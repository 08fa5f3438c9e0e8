"""A worker that logs numbered records until it is stopped, as services run in containers.

``python worker.py GROUP MODE``. It writes the number of each record to stdout once the
record is logged, so a test knows which records were logged before it sent a signal.

MODE says what the application does about SIGTERM: ``plain`` (nothing), ``ignore``
(SIG_IGN before logging is configured), ``before`` / ``after`` (its own handler, installed
before or after ``configure_logging``; ``after`` chains to the handler it replaced, as
uvicorn does), ``opt-out`` (``handle_signals=False``). ``FLUSH_TIMEOUT`` sets the
handler's ``flush_timeout``, ``SPOOL_DIR`` its ``spool_dir``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from types import FrameType

import watchtower_refresh

group, mode = sys.argv[1], sys.argv[2]
logger = logging.getLogger("worker")
previous: object = None


def app_handler(signum: int, frame: FrameType | None) -> None:
    logger.info("application handler ran")
    if callable(previous):
        previous(signum, frame)
    else:
        sys.exit(3)


if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "before":
    signal.signal(signal.SIGTERM, app_handler)
watchtower_refresh.configure_logging(
    log_group=group,
    console=False,
    handle_signals=mode != "opt-out",
    handler_options={
        "flush_timeout": os.environ.get("FLUSH_TIMEOUT", "10"),
    },
    spool_dir=os.environ.get("SPOOL_DIR"),
)
if mode == "after":
    previous = signal.signal(signal.SIGTERM, app_handler)
print(f"sigterm {signal.getsignal(signal.SIGTERM)!r}", flush=True)

n = 0
deadline = time.monotonic() + (3.0 if mode == "ignore" else 60.0)
while time.monotonic() < deadline:
    logger.info("record %d", n)
    print(n, flush=True)
    n += 1
    time.sleep(0.002)
