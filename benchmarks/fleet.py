"""A fleet against one account-wide quota: make bench-fleet (not part of make test or bench).

    python -m benchmarks.fleet [--processes 4] [--handlers 10] [--quota 20] [--seconds 20]
                               [--rate 20] [--send-interval 0.2] [--before REVISION]

Starts the fake AWS (``watchtower_refresh.testing.FakeAWS``) with a ``Quota``: PutLogEvents
allowed ``--quota`` times a second in all, answered ThrottlingException beyond it, as AWS
throttles an account and Region. Then ``--processes`` processes each log through
``--handlers`` handlers, every handler on a stream of its own, ``--rate`` records a second
each, for ``--seconds`` seconds, and end as a process ends (the exit hook closes every
handler on one deadline). Reported: the share of puts throttled, accepted puts a second
against the quota, records a second delivered, how long the backlog took to drain after the
processes began to close against the floor (streams / quota), and whether every record
logged was read back. ``--before REVISION`` runs the same fleet first on the package as it
was at that git revision (``git archive``), for a before-and-after table. Results:
stdout and ``benchmarks/results-fleet.json``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GROUP = "/bench/fleet"
FLUSH_TIMEOUT = 300.0  # seconds: long enough that the drain is measured, never cut short


def _worker(args: argparse.Namespace) -> None:
    """One process of the fleet: log, then end as a process ends; print one JSON line."""
    report: dict[str, Any] = {}
    handlers: list[Any] = []

    def counts() -> None:
        stats = [handler.stats for handler in handlers]
        report.update(
            delivered=sum(s.delivered for s in stats),
            dropped=sum(s.dropped_total for s in stats),
            queued=sum(s.queued for s in stats),
            retried=sum(s.retried for s in stats),
            closed_at=time.time(),
        )
        print(json.dumps(report), flush=True)

    # Registered before the package registers its exit hook, so it runs after that hook
    # (last in, first out): every handler is closed and its counts are final.
    atexit.register(counts)
    if args.package:
        sys.path.insert(0, args.package)
    from watchtower_refresh import RefreshingCloudWatchLogHandler

    handlers += [
        RefreshingCloudWatchLogHandler(
            GROUP,
            log_stream_name=f"p{args.index:02d}-h{n:02d}",
            send_interval=args.send_interval,
            flush_timeout=FLUSH_TIMEOUT,
        )
        for n in range(args.handlers)
    ]
    loggers = []
    for n, handler in enumerate(handlers):
        logger = logging.getLogger(f"fleet.h{n}")
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        loggers.append(logger)
    # Ready: the parent answers with the time every process starts logging at (imports on
    # a loaded machine take seconds, and not the same in every process).
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.time()))
    tick = 1.0 / args.rate
    began = time.monotonic()
    for step in range(int(args.seconds * args.rate)):
        time.sleep(max(0.0, began + step * tick - time.monotonic()))
        for n, logger in enumerate(loggers):
            logger.info("p%d h%d record %d %s", args.index, n, step, "x" * 60)
    report["logged"] = int(args.seconds * args.rate) * len(loggers)
    # The package's exit hook now closes every handler on one deadline, as at the end of
    # any process; ``counts`` then reports.
    report["closing_at"] = time.time()


@contextmanager
def _package_at(revision: str | None) -> Iterator[str | None]:
    """The package at git ``revision`` in a temporary directory (None: this checkout)."""
    if revision is None:
        yield None
        return
    from benchmarks.run import baseline_code

    with baseline_code(revision) as directory:
        if directory is None:
            raise SystemExit(f"git could not give revision {revision}")
        yield str(directory)


def _run_fleet(args: argparse.Namespace, package: str | None) -> dict[str, Any]:
    import boto3

    from benchmarks.run import _environment
    from watchtower_refresh.testing import FakeAWS, Quota, read_messages

    with FakeAWS() as aws:
        aws.reset()  # moto keeps its resources per process: the last run's events too
        quota = aws.injector.add_quota(Quota(args.quota))
        env = _environment()
        env.update(aws.environment())
        command = [sys.executable, "-m", "benchmarks.fleet", "--worker"]
        options = [
            f"--handlers={args.handlers}",
            f"--seconds={args.seconds}",
            f"--rate={args.rate}",
            f"--send-interval={args.send_interval}",
            *([f"--package={package}"] if package else []),
        ]
        processes = [
            subprocess.Popen(
                [*command, f"--index={index}", *options],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=HERE.parent,
            )
            for index in range(args.processes)
        ]
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise SystemExit("a fleet process did not start")
        start_at = time.time() + 0.5
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start_at}\n")
            process.stdin.close()
        steady: tuple[int, int] | None = None
        while any(p.poll() is None for p in processes):
            if steady is None and time.time() >= start_at + args.seconds:
                steady = (quota.allowed, quota.refused)  # the close begins about now
            time.sleep(0.05)
        ended_at = time.time()
        reports = []
        for process in processes:
            assert process.stdout is not None
            lines = process.stdout.read().strip().splitlines()
            if process.returncode != 0 or not lines:
                raise SystemExit(f"a fleet process failed (exit {process.returncode})")
            reports.append(json.loads(lines[-1]))
        fake = aws.environment()
        logs = boto3.client(
            "logs",
            region_name=fake["AWS_REGION"],
            endpoint_url=aws.endpoint_url,
            aws_access_key_id=fake["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=fake["AWS_SECRET_ACCESS_KEY"],
        )
        read_back = sum(1 for _ in read_messages(logs, GROUP))
        allowed, refused = quota.allowed, quota.refused
    steady = steady or (allowed, refused)
    logged = sum(r["logged"] for r in reports)
    streams = args.processes * args.handlers
    closing_at = min(r["closing_at"] for r in reports)
    drain = max(r["closed_at"] for r in reports) - closing_at
    total = allowed + refused
    return {
        "processes": args.processes,
        "handlers": streams,
        "quota_puts_per_second": args.quota,
        "send_interval": args.send_interval,
        "records_per_second_logged": args.processes * args.handlers * args.rate,
        "seconds": args.seconds,
        "puts": total,
        "throttled": refused,
        "throttled_share": refused / total if total else 0.0,
        "throttled_share_while_logging": steady[1] / max(1, sum(steady)),
        "accepted_puts_per_second_while_logging": steady[0] / args.seconds,
        "records_per_put": read_back / max(1, allowed),
        "records_per_second_delivered": read_back / max(1e-9, ended_at - start_at),
        "drain_seconds": drain,
        "drain_floor_seconds": streams / args.quota,
        "logged": logged,
        "read_back": read_back,
        "delivered": sum(r["delivered"] for r in reports),
        "dropped": sum(r["dropped"] for r in reports),
        "nothing_lost": read_back == logged and not sum(r["dropped"] for r in reports),
    }


def _table(name: str, result: dict[str, Any]) -> str:
    lines = [
        f"{name}: {result['processes']} processes, {result['handlers']} handlers on their own "
        f"streams, send_interval {result['send_interval']} s, "
        f"{result['records_per_second_logged']:,} records/s for {result['seconds']} s, "
        f"quota {result['quota_puts_per_second']} puts/s",
        f"  puts                     {result['puts']:>8,}   throttled {result['throttled']:,} "
        f"({result['throttled_share']:.0%}; {result['throttled_share_while_logging']:.0%} "
        "while logging)",
        f"  accepted puts/s          {result['accepted_puts_per_second_while_logging']:>8.1f}   "
        f"of {result['quota_puts_per_second']} while logging; "
        f"{result['records_per_put']:,.0f} records per accepted put",
        f"  records/s delivered      {result['records_per_second_delivered']:>8,.0f}   "
        f"of {result['records_per_second_logged']:,} logged, start to drained",
        f"  drain after close        {result['drain_seconds']:>8.1f} s  "
        f"(floor {result['drain_floor_seconds']:.1f} s: one put per stream at the quota)",
        f"  nothing lost             {result['nothing_lost']!s:>8}   "
        f"logged {result['logged']:,}, read back {result['read_back']:,}, "
        f"dropped {result['dropped']:,}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the fleet (and, with ``--before``, the same fleet on an earlier revision)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--handlers", type=int, default=10, help="per process")
    parser.add_argument("--quota", type=float, default=20.0, help="PutLogEvents/s in all")
    parser.add_argument("--seconds", type=float, default=20.0, help="of logging")
    parser.add_argument("--rate", type=float, default=20.0, help="records/s per handler")
    parser.add_argument("--send-interval", type=float, default=0.2)
    parser.add_argument("--before", help="git revision to measure first, as the before")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--package", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    results: dict[str, Any] = {}
    runs = [(f"before ({args.before})", args.before)] if args.before else []
    runs.append(("after" if args.before else "this checkout", None))
    for name, revision in runs:
        print(f"{name} ...", file=sys.stderr, flush=True)
        with _package_at(revision) as package:
            results[name] = _run_fleet(args, package)
        print(_table(name, results[name]), flush=True)
    (HERE / "results-fleet.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
