"""A full file system under the spool is a full spool: what neither the disk nor memory
kept is counted as ``spool_full``."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import logger_for
from watchtower_refresh._spool.format import SYNC
from watchtower_refresh.testing import FakeAWS, Fault

Read = Any


def test_records_neither_the_full_disk_nor_memory_kept_are_counted_as_spool_full(
    aws: FakeAWS,
    make_handler: Any,
    messages: Read,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    handler = make_handler("/spool/enospc", spool_dir=str(tmp_path), queue_max_events=10)
    logger = logger_for(handler)
    logger.info("on disk")
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        if bytes(data[:2]) == SYNC and len(data) > 30:  # a record's frame: no room for it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(30):
            logger.info("in memory %d", n)
        monkeypatch.setattr(os, "write", real_write)
        dropped = dict(handler.stats.dropped)
        aws.injector.remove_fault(outage)
        assert handler.flush(timeout=20)
        handler.close()
    assert set(dropped) == {"spool_full"}  # not queue_full: the disk was full
    said = " ".join(str(w.message) for w in caught)
    assert "No space left on device" in said
    delivered = messages("/spool/enospc")
    [marker] = [m for m in delivered if m.startswith("watchtower-refresh:")]  # neither kept
    assert marker.endswith(f" UTC (spool_full {dropped['spool_full']})")
    delivered.remove(marker)
    assert "on disk" in delivered
    assert len(delivered) + dropped["spool_full"] == 31, handler.stats
