"""Records logged in pool workers: ``python pools.py GROUP KIND ITEMS``.

KIND: ``multiprocessing-with`` (``with multiprocessing.Pool(3)``: its exit terminates the
workers with SIGTERM), ``billiard-with`` and ``billiard-close`` (billiard's ``Pool``, which
Celery's prefork pool is built on, ended by ``with`` or by ``close()`` + ``join()``).
"""

from __future__ import annotations

import logging
import os
import sys
import time

import watchtower_refresh

logger = logging.getLogger("pool")


def work(n: int) -> int:
    logger.info("item %d in %d", n, os.getpid())
    time.sleep(0.001)
    return n


if __name__ == "__main__":
    group, kind, items = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind.startswith("billiard"):
        import billiard as pools  # type: ignore[import-untyped]
    else:
        import multiprocessing as pools
    watchtower_refresh.configure_logging(log_group=group, console=False)
    context = pools.get_context("fork")
    if kind.endswith("-with"):
        with context.Pool(3) as pool:
            done = pool.map(work, range(items), chunksize=1)
    else:
        pool = context.Pool(3)
        done = pool.map(work, range(items), chunksize=1)
        pool.close()
        pool.join()
    print(len(done), flush=True)
