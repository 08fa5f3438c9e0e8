"""What the tail file's store costs emit() with a spool: this append beside an earlier one.

    python -m benchmarks.spool_tail [REVISION]

Two handlers with a spool in one process, against the loopback sink of benchmarks.sink:
one as it is, and one whose writer appends with ``Spool.append`` as it was at REVISION
(default: the last before the tail file), taken from git. Rounds alternate which goes
first; each sample is the calling thread's CPU time per record (``time.thread_time``) of
``handle()``, and the ratio is paired round by round, its median reported.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BEFORE_TAIL = "36f9f66"
NOW = "with the tail store"
BEFORE = "without it"
STREAM = "StreamHandler (memory)"


def _earlier_append(revision: str) -> Any:
    """``Spool.append`` as it was at ``revision``, in a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:watchtower_refresh/_spool/writer.py"],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        check=True,
    ).stdout
    name = "watchtower_refresh._spool._writer_earlier"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "watchtower_refresh._spool"
    sys.modules[name] = module
    exec(compile(source, f"{revision}:writer.py", "exec"), module.__dict__)
    return module.Spool.append


def run(endpoint: str, revision: str, rounds: int = 31, repeat: int = 5) -> dict[str, Any]:
    """Per-record cost of each handler, interleaved round by round."""
    from benchmarks.cases import FORMAT, cpu_per_record, ours, records

    earlier = _earlier_append(revision)
    stream = logging.StreamHandler(io.StringIO())
    stream.setFormatter(logging.Formatter(FORMAT))
    with tempfile.TemporaryDirectory(prefix="bench-tail-") as directory:
        handlers: dict[str, logging.Handler] = {
            NOW: ours(endpoint, spool_dir=directory),
            BEFORE: ours(endpoint, spool_dir=directory),
            STREAM: stream,
        }
        for handler in handlers.values():  # warm up: senders started, writers opened
            for record in records():
                handler.handle(record)
        writer = handlers[BEFORE]._pipeline.spool.writer  # type: ignore[attr-defined]
        assert writer is not None
        writer.append = types.MethodType(earlier, writer)
        time.sleep(1.0)
        samples: dict[str, list[float]] = {name: [] for name in handlers}
        names = list(handlers)
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                handler = handlers[name]
                passes = [records() for _ in range(repeat)]
                samples[name].append(cpu_per_record(handler, passes))
                handler.flush()  # untimed: its delivery stays out of the next round
                stream.stream = io.StringIO()
        for handler in handlers.values():
            handler.close()
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "ratio": statistics.median(
            now / before for now, before in zip(samples[NOW], samples[BEFORE], strict=True)
        ),
    }


def main() -> None:
    """Run beside the sink; print the medians and the paired ratio."""
    from benchmarks.run import _environment, sink

    os.environ.clear()
    os.environ.update(_environment())  # fake credentials: the sink accepts any
    revision = sys.argv[1] if len(sys.argv) > 1 else BEFORE_TAIL
    with sink() as url:
        result = run(url, revision)
    for name, us in result["us"].items():
        print(f"  {name:<24}{us:8.2f} us per record (CPU, calling thread)")
    print(f"emit() with a spool, with the tail store / without it: {result['ratio']:.3f} x")


if __name__ == "__main__":
    main()
