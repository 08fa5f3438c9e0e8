"""The demo: records keep arriving while tokens expire every few seconds.

It starts the fake AWS (moto on loopback, tokens enforced by the fault injector), configures
logging with ``dictConfig`` and a role ARN the way applications do at import time, logs from
several threads across several expiries, reads every event back and counts what was lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import logging.config
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3

from ._handler import RefreshingCloudWatchLogHandler
from .testing import FakeAWS, read_messages

__all__ = ["DemoResult", "demo_logging_config", "run_demo"]

DEMO_ROLE_ARN = "arn:aws:iam::123456789012:role/demo-logger"
DEMO_LOG_GROUP = "/demo/watchtower-refresh"
DEMO_REGION = "us-east-1"

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
        env = aws.environment(DEMO_REGION)
        del env["AWS_ENDPOINT_URL"]  # the handler gets its endpoint from the config alone
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
