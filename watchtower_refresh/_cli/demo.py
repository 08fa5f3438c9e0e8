"""``watchtower-refresh demo``: records keep arriving while tokens expire, and survive a kill -9.

``run_demo`` starts the fake AWS (moto on loopback, tokens enforced by the fault injector),
configures logging with ``dictConfig`` and a role ARN the way applications do at import time,
logs from several threads across several expiries, reads every event back and counts what was
lost.

``run_spool_demo`` starts a child process that logs with a disk spool, kills it with SIGKILL
while a backlog waits behind a slow service, then lets a new handler on the same directory
adopt and replay what the dead process left, and counts every record whose ``log`` call
returned against what the log group holds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import logging
import logging.config
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

import boto3

from .._handler import RefreshingCloudWatchLogHandler
from .._redact import redact
from .._spool import describe
from ..testing import FakeAWS, Fault, read_messages
from .config import UsageError

__all__ = [
    "EXIT_DEMO_LOST",
    "EXIT_OK",
    "DemoResult",
    "SpoolDemoResult",
    "demo_logging_config",
    "run",
    "run_demo",
    "run_spool_demo",
]

EXIT_OK = 0
EXIT_DEMO_LOST = 1
"""A logged record is missing, or (``--spool``) more duplicates than one batch."""

DEMO_ROLE_ARN = "arn:aws:iam::123456789012:role/demo-logger"
DEMO_LOG_GROUP = "/demo/watchtower-refresh"
DEMO_REGION = "us-east-1"
DEMO_SPOOL_LOG_GROUP = "/demo/watchtower-refresh-spool"

# The pattern that breaks with a client built once: a module-level logger, configured once.
logger = logging.getLogger("watchtower_refresh.demo.orders")


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo sent, what came back, and what it cost."""

    sent: int
    """Records logged."""
    delivered: int
    """Distinct records read back from the log group."""
    lost: int
    """Records logged but not read back."""
    duplicates: int
    """Records read back more than once."""
    assume_role_calls: int
    """AssumeRole requests the fake STS answered."""
    expired_token_answers: int
    """Requests the fake AWS refused because their token had expired."""
    credential_refreshes: int
    """Times the handler fetched fresh credentials after such a refusal."""
    retried: int
    """Puts resent for any other reason."""
    seconds: float
    """Wall-clock time spent logging, in seconds."""
    token_lifetime: float
    """Lifetime of each token, in seconds."""

    @property
    def ok(self) -> bool:
        """True when nothing was lost or duplicated."""
        return self.lost == 0 and self.duplicates == 0


def demo_logging_config(endpoint_url: str) -> dict[str, Any]:
    """The ``dictConfig`` the demo applies: plain data, as it would stand in a YAML file."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "cloudwatch": {
                "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                "log_group_name": DEMO_LOG_GROUP,
                "log_stream_name": "{machine_name}/{process_id}",
                "role_arn": DEMO_ROLE_ARN,
                "duration_seconds": 900,
                "region_name": DEMO_REGION,
                "endpoint_url": endpoint_url,
                "send_interval": 0.5,
            }
        },
        "loggers": {
            "watchtower_refresh.demo": {
                "handlers": ["cloudwatch"],
                "level": "INFO",
                "propagate": False,
            }
        },
    }


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(
    *,
    duration: float = 20.0,
    token_lifetime: float = 4.0,
    clock_skew: float = 3.0,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo and return its counts.

    Args:
        duration: How long to log, in seconds.
        token_lifetime: Lifetime the fake STS gives each token, in seconds.
        clock_skew: How far the fake AWS's clock runs ahead of this machine's, in seconds.
            The client then believes each token lives that much longer than it does, so
            some puts meet ``ExpiredTokenException`` before the client's own refresh.
        threads: Number of threads logging at once.
        progress: Called with a line of progress about once a second.
    """
    say = progress or (lambda line: None)

    def aws_clock() -> datetime.datetime:
        now = datetime.datetime.now(datetime.timezone.utc)
        return now + datetime.timedelta(seconds=clock_skew)

    with FakeAWS(clock=aws_clock, token_lifetime=token_lifetime) as aws:
        aws.reset()  # moto's state is per process: start from an empty account
        # Fake source keys: the demo's role is assumed from them, as from a task's keys.
        env = _fake_keys(aws)
        env["AWS_ENDPOINT_URL_STS"] = aws.endpoint_url
        with _environment(env):
            return _log_and_count(aws, duration, token_lifetime, threads, say)


def _log_and_count(
    aws: FakeAWS,
    duration: float,
    token_lifetime: float,
    threads: int,
    say: Callable[[str], None],
) -> DemoResult:
    logging.config.dictConfig(demo_logging_config(aws.endpoint_url))
    handler = logging.getLogger("watchtower_refresh.demo").handlers[0]
    assert isinstance(handler, RefreshingCloudWatchLogHandler)
    sent: list[list[str]] = [[] for _ in range(threads)]
    stop = threading.Event()
    run = uuid.uuid4().hex[:8]

    def work(worker: int) -> None:
        while not stop.is_set():
            message = f"run {run} worker {worker} order {len(sent[worker])} placed"
            logger.info(message)
            sent[worker].append(message)
            stop.wait(0.005)

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        while (elapsed := time.monotonic() - started) < duration:
            time.sleep(min(1.0, max(0.0, duration - elapsed)))
            stats = handler.stats
            say(
                f"{time.monotonic() - started:5.1f}s  sent {sum(map(len, sent)):6d}  "
                f"delivered {stats.delivered:6d}  AssumeRole {aws.injector.counts['AssumeRole']:3d}"
                f"  expired-token retries {stats.credential_refreshes:3d}"
            )
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        seconds = time.monotonic() - started
        handler.close()
        logging.getLogger("watchtower_refresh.demo").removeHandler(handler)
    stats = handler.stats
    client = boto3.client("logs", region_name=DEMO_REGION, endpoint_url=aws.endpoint_url)
    every = {message for messages in sent for message in messages}
    got = [message for message in read_messages(client, DEMO_LOG_GROUP) if message in every]
    return DemoResult(
        sent=len(every),
        delivered=len(set(got)),
        lost=len(every - set(got)),
        duplicates=len(got) - len(set(got)),
        assume_role_calls=aws.injector.counts["AssumeRole"],
        expired_token_answers=aws.injector.counts["ExpiredTokenException"],
        credential_refreshes=stats.credential_refreshes,
        retried=stats.retried,
        seconds=seconds,
        token_lifetime=token_lifetime,
    )


# ----------------------------------------------------------------------------- kill -9


@dataclasses.dataclass(frozen=True)
class SpoolDemoResult:
    """What the child logged before SIGKILL, what the spool kept, and what arrived."""

    logged: int
    """Records whose ``log`` call returned in the child before it was killed."""
    delivered_before_kill: int
    """Records the log group held once the child was dead, before any replay: what the child
    delivered, including a batch the service accepted as the child died."""
    left_in_spool: int
    """Records the dead child left in the spool, not acknowledged by the service."""
    replayed: int
    """Records the new handler adopted from the spool and delivered (its ``stats.replayed``)."""
    arrived: int
    """Logged records read back from the log group after the replay."""
    missing: int
    """Logged records not read back: the demo fails if there is one."""
    duplicates: int
    """Extra copies read back: records of a batch the service accepted as the child died."""
    unconfirmed: int
    """Records read back that the child wrote to the spool but was killed before its
    ``log`` call returned (not counted in ``logged``)."""
    dropped: int
    """Records the new handler gave up (``stats.dropped_total``)."""
    batch_records: int
    """Most records in one of the child's batches: the most duplicates one death may cause."""
    seconds: float
    """Wall-clock time the child logged before the kill, in seconds."""
    put_delay: float
    """Seconds the fake service held each PutLogEvents, so that a backlog built up."""

    @property
    def ok(self) -> bool:
        """True when every logged record arrived, duplicates are at most one batch and
        counted as replayed, and nothing was dropped."""
        return (
            self.missing == 0
            and self.duplicates <= min(self.batch_records, self.replayed)
            and self.dropped == 0
        )


# The child: a plain application process with a spool. It prints each record's number once
# the log call has returned, so the parent knows which records the spool must keep.
_SPOOL_CHILD = """
import logging, os, sys, time, warnings
warnings.simplefilter("ignore")  # its warnings are not the demo's output
from watchtower_refresh import RefreshingCloudWatchLogHandler
group, directory, batch, endpoint, region = sys.argv[1:6]
handler = RefreshingCloudWatchLogHandler(
    group, "orders-worker", spool_dir=directory, send_interval=0.05,
    max_batch_count=int(batch), endpoint_url=endpoint, region_name=region,
)
logger = logging.getLogger("watchtower_refresh.demo.worker")
logger.addHandler(handler)
logger.propagate = False
logger.setLevel(logging.INFO)
n = 0
while True:
    logger.info("order %d placed", n)
    os.write(1, b"%d\\n" % n)  # only after the log call returned
    n += 1
    if n % 2 == 0:
        time.sleep(0.001)  # a busy service's pace, not a benchmark
"""


def _child_environment(aws: FakeAWS) -> dict[str, str]:
    """The parent's environment without anything that could reach real AWS."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(aws.environment(DEMO_REGION))
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def run_spool_demo(
    *,
    duration: float = 2.0,
    put_delay: float = 0.2,
    batch_records: int = 100,
    progress: Callable[[str], None] | None = None,
) -> SpoolDemoResult:
    """Kill a process that logs with a spool, replay what it left, and count.

    Args:
        duration: How long the child logs before it is killed, in seconds.
        put_delay: How long the fake service holds each PutLogEvents, in seconds: the child
            logs faster than it can deliver, so records wait in its queue and spool, and the
            kill most likely lands while a put is in flight.
        batch_records: Most records per batch in the child, in events.
        progress: Called with a line of progress a few times a second.

    Raises:
        RuntimeError: The child ended before it was killed (its last lines of stderr say why).
    """
    say = progress or (lambda line: None)
    with (
        FakeAWS() as aws,
        tempfile.TemporaryDirectory(prefix="watchtower-refresh-spool-demo-") as directory,
        tempfile.TemporaryFile() as child_errors,
    ):
        aws.reset()
        slow = aws.injector.add_fault(Fault("", action="PutLogEvents", delay=put_delay))
        arguments = [DEMO_SPOOL_LOG_GROUP, directory, str(batch_records)]
        child = subprocess.Popen(  # noqa: S603 (this interpreter, this package's own code)
            [sys.executable, "-c", _SPOOL_CHILD, *arguments, aws.endpoint_url, DEMO_REGION],
            stdout=subprocess.PIPE,
            stderr=child_errors,
            env=_child_environment(aws),
        )
        returned, seconds = _read_until_killed(child, duration, say)
        _raise_unless_killed(child, child_errors)
        say(f"killed child pid {child.pid} with SIGKILL after {_records(len(returned))}")
        time.sleep(put_delay + 0.3)  # a put the service was holding at the kill lands now
        aws.injector.remove_fault(slow)
        with _environment(_fake_keys(aws)):
            return _replay_and_count(aws, directory, returned, seconds, put_delay, batch_records)


def _read_until_killed(
    child: subprocess.Popen[bytes], duration: float, say: Callable[[str], None]
) -> tuple[set[int], float]:
    """Read the numbers the child logged for ``duration`` seconds, then SIGKILL it; return
    every number it printed, and for how many seconds it logged."""
    assert child.stdout is not None
    returned: set[int] = set()
    started: float | None = None
    next_report = 0.5
    try:
        for line in child.stdout:
            returned.add(int(line))
            now = time.monotonic()
            started = started or now
            if now - started >= next_report:
                say(f"{now - started:5.1f}s  logged {len(returned):6d}  (child pid {child.pid})")
                next_report += 0.5
            if now - started >= duration:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    seconds = time.monotonic() - (started or time.monotonic())
    returned.update(int(number) for number in rest.split())
    return returned, seconds


def _raise_unless_killed(child: subprocess.Popen[bytes], child_errors: IO[bytes]) -> None:
    """Raise if the child ended by itself rather than by our SIGKILL, with its last lines
    of stderr."""
    if child.returncode != -signal.SIGKILL:
        child_errors.seek(0)
        tail = child_errors.read().decode("utf-8", "replace").strip().splitlines()[-5:]
        message = (
            f"the logging child ended by itself (status {child.returncode}): {' | '.join(tail)}"
        )
        raise RuntimeError(message)


def _fake_keys(aws: FakeAWS) -> dict[str, str]:
    """The fake AWS's keys and region, without its endpoint: the handler is given it."""
    env = aws.environment(DEMO_REGION)
    del env["AWS_ENDPOINT_URL"]
    return env


def _numbers(client: Any) -> Counter[int]:
    """The record numbers the demo's group holds; none when the group does not exist yet (a
    child killed before its first put, on a busy machine, never created it)."""
    try:
        return Counter(
            int(message.split()[1])
            for message in read_messages(client, DEMO_SPOOL_LOG_GROUP)
            if message.startswith("order ")  # not a drop marker
        )
    except client.exceptions.ResourceNotFoundException:
        return Counter()


def _replay_and_count(
    aws: FakeAWS,
    directory: str,
    returned: set[int],
    seconds: float,
    put_delay: float,
    batch_records: int,
) -> SpoolDemoResult:
    client = boto3.client("logs", region_name=DEMO_REGION, endpoint_url=aws.endpoint_url)
    before = _numbers(client)
    left = sum(owner.records for owner in describe(directory) if owner.state == "dead")
    handler = RefreshingCloudWatchLogHandler(
        DEMO_SPOOL_LOG_GROUP,
        spool_dir=directory,
        endpoint_url=aws.endpoint_url,
        region_name=DEMO_REGION,
        handle_signals=False,
    )
    try:
        handler.flush(timeout=30)  # starts delivery: adopts the dead child's records
    finally:
        handler.close()
    stats = handler.stats
    after = _numbers(client)
    return SpoolDemoResult(
        logged=len(returned),
        delivered_before_kill=sum(before.values()),
        left_in_spool=left,
        replayed=stats.replayed,
        arrived=len(returned & set(after)),
        missing=len(returned - set(after)),
        duplicates=sum(after.values()) - len(after),
        unconfirmed=len(set(after) - returned),
        dropped=stats.dropped_total,
        batch_records=batch_records,
        seconds=seconds,
        put_delay=put_delay,
    )


def _records(number: int) -> str:
    return f"{number:,} record" + ("" if number == 1 else "s")


# ----------------------------------------------------------------------------- the command

_SPOOL_DEMO_PUT_DELAY = 0.2  # seconds; slower than the child logs, so records wait on disk


def run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Run the demo the flags ask for, print its summary; return the exit code."""
    if args.spool:
        return _spool_demo(args, out)
    duration = 20.0 if args.duration is None else args.duration
    token_lifetime = 4.0 if args.token_lifetime is None else args.token_lifetime
    clock_skew = 3.0 if args.clock_skew is None else args.clock_skew
    threads = 2 if args.threads is None else args.threads
    print(
        f"Logging for {duration:g} s from {threads} thread{'' if threads == 1 else 's'}; "
        f"tokens live {token_lifetime:g} s; the fake AWS's clock runs {clock_skew:g} s ahead.",
        file=sys.stderr,
    )
    result = run_demo(
        duration=duration,
        token_lifetime=token_lifetime,
        clock_skew=clock_skew,
        threads=threads,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        out(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    else:
        rate = result.seconds / max(1, result.assume_role_calls)
        out(
            "\n".join(
                [
                    f"records sent              {result.sent}",
                    f"records delivered         {result.delivered}",
                    f"records lost              {result.lost}",
                    f"duplicates                {result.duplicates}",
                    f"AssumeRole calls          {result.assume_role_calls}"
                    f"  (one per {rate:.1f} s; tokens live {result.token_lifetime:g} s)",
                    f"expired-token answers     {result.expired_token_answers}",
                    f"expired-token retries     {result.credential_refreshes}"
                    "  (fresh credentials fetched, batch resent)",
                    f"other retries             {result.retried}",
                    "result                    "
                    + ("OK: nothing lost" if result.ok else "FAILED: records were lost"),
                ]
            )
        )
    return EXIT_OK if result.ok else EXIT_DEMO_LOST


def _spool_demo(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    others = [
        flag
        for flag, value in (
            ("--token-lifetime", args.token_lifetime),
            ("--clock-skew", args.clock_skew),
            ("--threads", args.threads),
        )
        if value is not None
    ]
    if others:
        message = f"{', '.join(others)} do not apply to --spool"
        raise UsageError(message)
    duration = 2.0 if args.duration is None else args.duration
    print(
        f"A child process logs with spool_dir set for {duration:g} s and is killed with "
        f"SIGKILL; the fake service holds each put {_SPOOL_DEMO_PUT_DELAY:g} s, so a backlog "
        "builds up.",
        file=sys.stderr,
    )
    try:
        result = run_spool_demo(
            duration=duration,
            put_delay=_SPOOL_DEMO_PUT_DELAY,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except RuntimeError as exc:  # the child died before the kill: nothing to measure
        print(f"watchtower-refresh demo: {redact(str(exc))}", file=sys.stderr)
        return EXIT_DEMO_LOST
    if args.json:
        out(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    else:
        out(_describe_spool_demo(result))
    return EXIT_OK if result.ok else EXIT_DEMO_LOST


def _describe_spool_demo(result: SpoolDemoResult) -> str:
    rows = [
        ("records logged", result.logged, "the log call returned before the kill"),
        ("delivered by the child", result.delivered_before_kill, "read back once it died"),
        ("left in the spool", result.left_in_spool, "not acknowledged when it died"),
        ("replayed", result.replayed, "adopted by a new handler and delivered"),
        ("records read back", f"{result.arrived} of {result.logged} logged", ""),
        ("records missing", result.missing, ""),
        (
            "came twice",
            result.duplicates,
            f"counted in replayed; one batch at most: {result.batch_records}",
        ),
        (
            "logged at the kill",
            result.unconfirmed,
            "spooled, but the log call had not returned; arrived too",
        ),
    ]
    verdict = (
        "OK: every logged record arrived"
        if result.ok
        else "FAILED: records were lost, dropped or duplicated beyond a batch"
    )
    lines = [
        f"{label:<24}{value!s:<9}" + (f"  ({note})" if note else "") for label, value, note in rows
    ]
    return "\n".join([*(line.rstrip() for line in lines), f"{'result':<24}{verdict}"])
