"""The disk spool's cost on the emit path, beside a StreamHandler and SQLite, in one run.

    python -m benchmarks.spool

Runs the ``spool`` case of benchmarks.cases in a fresh process (against the loopback sink,
for our handler's own emit cost), prints a table and writes benchmarks/results-spool.json.
Every figure is the calling thread's CPU time per record (user and system: the kernel's
copy into the page cache counts), and each ratio is paired with the StreamHandler measured
in the same round, as in ``make bench``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchtower_refresh._spool import Spool

HERE = Path(__file__).resolve().parent
STREAM = "StreamHandler (memory)"
HANDLER = "watchtower-refresh"
APPEND = "spool append"
SQLITE_OFF = "SQLite WAL insert, synchronous=OFF"
SQLITE_NORMAL = "SQLite WAL insert, synchronous=NORMAL"
MMAP = "mmap copy (not used: SIGBUS risk)"


def _sqlite(path: str, synchronous: str) -> Callable[[str, int, str], int | None]:
    """An autocommit insert per record: what "in the kernel's hands before emit() returns"
    costs with SQLite in WAL mode."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("pragma journal_mode=wal")
    db.execute(f"pragma synchronous={synchronous}")
    db.execute("create table spool (id integer primary key, ts integer, stream text, msg text)")
    insert = "insert into spool (ts, stream, msg) values (?, ?, ?)"

    def append(stream: str, timestamp_ms: int, message: str) -> int | None:
        return db.execute(insert, (timestamp_ms, stream, message)).lastrowid

    return append


def _mmapped(path: str) -> Callable[[str, int, str], int | None]:
    """The same frame copied into a shared mapping of a preallocated file: no system call
    per record. Not what the spool does: a mapped file truncated underneath, or a page
    the file system cannot back, kills the process with SIGBUS instead of an OSError."""
    import mmap
    import zlib

    from watchtower_refresh._spool.format import FRAME as _FRAME
    from watchtower_refresh._spool.format import RECORD as _RECORD
    from watchtower_refresh._spool.format import SYNC as _SYNC

    size = 256 * 1024 * 1024
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, size)
    mapped = mmap.mmap(fd, size)
    state = {"offset": 0, "id": 0}

    def append(stream: str, timestamp_ms: int, message: str) -> int | None:
        state["id"] += 1
        encoded = stream.encode()
        body = _RECORD.pack(state["id"], timestamp_ms, len(encoded)) + encoded + message.encode()
        frame = _FRAME.pack(_SYNC, len(body), zlib.crc32(body)) + body
        start = state["offset"] % (size - len(frame))
        mapped[start : start + len(frame)] = frame
        state["offset"] = start + len(frame)
        return state["id"]

    return append


def case_spool(endpoint: str, rounds: int = 15, repeat: int = 3) -> dict[str, Any]:
    """Per-record cost of each way to keep a record, interleaved round by round."""
    from benchmarks.cases import FORMAT, ours, records

    batch = records()
    stream = logging.StreamHandler(io.StringIO())
    stream.setFormatter(logging.Formatter(FORMAT))
    messages = [stream.format(record) for record in batch]
    stamps = [int(record.created * 1000) for record in batch]
    handler = ours(endpoint)
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool.open(directory, "bench")
        assert spool is not None
        writers: dict[str, Callable[[str, int, str], int | None]] = {
            APPEND: spool.append,
            SQLITE_OFF: _sqlite(os.path.join(directory, "off.db"), "OFF"),
            SQLITE_NORMAL: _sqlite(os.path.join(directory, "normal.db"), "NORMAL"),
            MMAP: _mmapped(os.path.join(directory, "mapped")),
        }

        def via(write: Callable[[str, int, str], int | None]) -> Callable[[], None]:
            def run() -> None:
                for message, stamp in zip(messages, stamps, strict=True):
                    write("bench-stream", stamp, message)

            return run

        def handle(target: logging.Handler) -> Callable[[], None]:
            def run() -> None:
                for record in batch:
                    target.handle(record)

            return run

        work: dict[str, Callable[[], None]] = {
            STREAM: handle(stream),
            HANDLER: handle(handler),
            **{name: via(write) for name, write in writers.items()},
        }
        for run in work.values():  # warm up: sender started, files and tables created
            run()
        time.sleep(1.0)
        samples: dict[str, list[float]] = {name: [] for name in work}
        names = list(work)
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                started = time.thread_time()
                for _ in range(repeat):
                    work[name]()
                samples[name].append((time.thread_time() - started) / (repeat * len(batch)) * 1e6)
                stream.stream = io.StringIO()
        fsync_spool = Spool.open(os.path.join(directory), "bench-fsync", fsync=True)
        assert fsync_spool is not None
        started = time.perf_counter()
        for message, stamp in zip(messages[:200], stamps, strict=False):
            fsync_spool.append("bench-stream", stamp, message)
        fsync_wall = (time.perf_counter() - started) / 200 * 1e6
        spool.close()
        fsync_spool.close()
        settle = _settling(directory, messages)
    base = samples[STREAM]
    ratio = {
        name: statistics.median(v / b for v, b in zip(values, base, strict=True))
        for name, values in samples.items()
    }
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "ratio_to_stream": ratio,
        # emit() with the spool = the handler's emit plus one append of the formatted message
        "projected_emit_with_spool_ratio": ratio[HANDLER] + ratio[APPEND],
        "fsync_append_wall_us": fsync_wall,
        **settle,
    }


def _settling(directory: str, messages: list[str], count: int = 100_000) -> dict[str, float]:
    """The sender's side: ack cost per record in batches of 1,000, and replay speed."""
    from watchtower_refresh._spool import adopt

    spool = Spool.open(directory, "bench-settle")
    assert spool is not None
    ids = [spool.append("bench-stream", n, messages[n % len(messages)]) for n in range(count)]
    started = time.thread_time()
    for start in range(0, count // 2, 1000):
        spool.ack(i for i in ids[start : start + 1000] if i is not None)
    ack_us = (time.thread_time() - started) / (count // 2) * 1e6
    spool.close()  # half left unacknowledged, as a dead process would leave them
    started, replayed = time.perf_counter(), 0
    with adopt(directory, "bench-settle") as adoption:
        for batch in adoption:
            replayed += len(batch.records)
            batch.ack()
    return {
        "ack_us_per_record": ack_us,
        "replay_records_per_second": replayed / (time.perf_counter() - started),
    }


def table(result: dict[str, Any]) -> str:
    """The result as a plain-text table."""
    lines = ["CPU us per record in the calling thread; ratio to StreamHandler in the same round"]
    lines += [
        f"  {name:<38}{us:8.2f} us  {result['ratio_to_stream'][name]:5.2f} x"
        for name, us in result["us"].items()
    ]
    projected = result["projected_emit_with_spool_ratio"]
    lines.append(
        f"emit() with the spool, projected (handler + append): {projected:.2f} x StreamHandler"
        f" ({'met' if projected <= 2.0 else 'MISS'}: target <= 2 x)"
    )
    fsync = result["fsync_append_wall_us"]
    lines.append(f"append with fsync=True: {fsync:,.0f} us wall time per record")
    lines.append(f"ack, batches of 1,000: {result['ack_us_per_record']:.2f} us CPU per record")
    lines.append(f"replay (adopt, read, ack): {result['replay_records_per_second']:,.0f} records/s")
    return "\n".join(lines)


def main() -> None:
    """Run the case in a fresh process beside the sink; report."""
    from benchmarks.run import case, sink

    print("spool: append cost against a StreamHandler and SQLite ...", file=sys.stderr)
    with sink() as url:
        result = case("spool", url)
    (HERE / "results-spool.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
