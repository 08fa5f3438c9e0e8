"""The reliability suite: faults that try to lose records, each run read back and counted.

Outcomes, not timings. Every case logs numbered records through faults and asserts that every
record was read back from the service, or counted with its reason. Cases covered elsewhere:
the stream deleted mid-run and AccessDenied fixed by a policy change (test_handler), the
interpreter exiting without close() and a forked child (test_handler, in subprocesses).
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import REGION, ROLE_ARN, log_from_threads, soak
from watchtower_refresh import RefreshingCloudWatchLogHandler, refreshable_session
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault

Read = Callable[[str], list[str]]


@pytest.fixture
def handler() -> Iterator[Callable[..., RefreshingCloudWatchLogHandler]]:
    made: list[RefreshingCloudWatchLogHandler] = []

    def make(group: str, **options: Any) -> RefreshingCloudWatchLogHandler:
        options.setdefault("send_interval", 0.02)
        options.setdefault("max_batch_count", 100)  # many batches: many chances to fail
        made.append(RefreshingCloudWatchLogHandler(group, **options))
        return made[-1]

    yield make
    for item in made:
        item.close()


def log_numbered(handler: logging.Handler, count: int, prefix: str = "record") -> list[str]:
    logger = logging.getLogger(f"reliability.{id(handler)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    sent = []
    for n in range(count):
        sent.append(f"{prefix} {n}")
        logger.info(sent[-1])
    return sent


@pytest.mark.slow
@pytest.mark.parametrize(
    "faults",
    [
        [Fault("ThrottlingException", action="PutLogEvents", probability=0.3)],
        [Fault("ServiceUnavailableException", action="PutLogEvents", status=503, probability=0.1)],
        [Fault("ConnectionReset", action="PutLogEvents", probability=0.1)],
        [
            Fault("ThrottlingException", action="PutLogEvents", probability=0.2),
            Fault("ServiceUnavailableException", status=503, probability=0.1),
            Fault("ConnectionReset", probability=0.05),
        ],
    ],
    ids=["30%-throttled", "10%-503", "10%-resets", "all-at-once"],
)
def test_no_loss_under_transient_faults(
    aws: FakeAWS, handler: Any, messages: Read, faults: list[Fault]
) -> None:
    for fault in faults:
        aws.injector.add_fault(fault)
    cloudwatch = handler("/rel/transient")
    sent = log_numbered(cloudwatch, 3000)
    assert cloudwatch.flush(timeout=120)
    got = messages("/rel/transient")
    assert sorted(got) == sorted(sent)
    assert cloudwatch.stats.dropped == {}
    assert cloudwatch.stats.retried > 0
    injected = sum(aws.injector.counts[f.code] for f in faults)
    assert injected > 0


def test_no_loss_across_ten_expiries(
    aws: FakeAWS, clock: FakeClock, handler: Any, messages: Read
) -> None:
    aws.injector.clock = lambda: clock() + datetime.timedelta(seconds=800)
    cloudwatch = handler(
        "/rel/expiries",
        session_factory=lambda: refreshable_session(
            ROLE_ARN, duration_seconds=900, region_name=REGION, clock=clock
        ),
    )
    sent: list[str] = []
    for round_ in range(11):
        sent += log_numbered(cloudwatch, 50, prefix=f"round {round_}")
        assert cloudwatch.flush(timeout=30)
        clock.advance(950)  # past each token's real end, inside its believed life
    assert sorted(messages("/rel/expiries")) == sorted(sent)
    assert aws.injector.counts["ExpiredTokenException"] == 10
    assert cloudwatch.stats.credential_refreshes == 10
    assert cloudwatch.stats.dropped == {}


@pytest.mark.soak
def test_eight_threads_logging_at_once_deliver_each_record_once(
    aws: FakeAWS, handler: Any, messages: Read
) -> None:
    each = soak(2_500, 10_000)
    aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents", probability=0.1))
    cloudwatch = handler("/rel/threads", max_batch_count=10_000, send_interval=0.2)
    logger = logging.getLogger("reliability.threads")
    logger.handlers = [cloudwatch]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log_from_threads(logger, threads=8, records=each)
    assert cloudwatch.flush(timeout=120)
    got = messages("/rel/threads")
    assert len(got) == 8 * each
    assert len(set(got)) == 8 * each
    assert cloudwatch.stats.delivered == 8 * each
    assert cloudwatch.stats.dropped == {}


def test_a_long_outage_loses_only_what_the_cap_counts(
    aws: FakeAWS, handler: Any, messages: Read
) -> None:
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    cloudwatch = handler("/rel/outage", queue_max_events=500)
    with pytest.warns(Warning, match="is full"):
        sent = log_numbered(cloudwatch, 2000)
    aws.injector.remove_fault(outage)
    assert cloudwatch.flush(timeout=60)
    got = messages("/rel/outage")
    marker = [m for m in got if m.startswith("watchtower-refresh: 1500 records dropped")]
    assert len(marker) == 1  # the stream says what it lost
    got.remove(marker[0])
    stats = cloudwatch.stats
    assert len(got) + stats.dropped_total == len(sent)
    assert stats.dropped == {"queue_full": 1500}
    assert sorted(got) == sorted(sent[:500])  # the oldest are kept, the newest dropped


# A process that logs through an outage with a spool and reports its resident memory (KiB,
# from /proc/self/status) and its stats as JSON lines: once the records are logged, and once
# the parent has ended the outage and the backlog is delivered.
_OUTAGE_CHILD = """
import gc, json, logging, sys, time, warnings
warnings.simplefilter("ignore")  # resend warnings are expected here; stdout is for JSON
from watchtower_refresh import RefreshingCloudWatchLogHandler

def kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)

group, directory = sys.argv[1:3]
records, size, max_events, max_bytes = map(int, sys.argv[3:7])
handler = RefreshingCloudWatchLogHandler(
    group, spool_dir=directory, queue_max_events=max_events, queue_max_bytes=max_bytes,
    max_message_size=4 * size, send_interval=0.05, flush_timeout=60,
)
logger = logging.getLogger("outage")
logger.addHandler(handler)
logger.propagate = False
logger.setLevel(logging.INFO)
padding = "x" * size

def report(**extra):
    stats = handler.stats
    counts = {name: getattr(stats, name) for name in ("delivered", "queued", "replayed", "corrupt")}
    peak = max(peak_seen, kib(peak_field))
    print(json.dumps(dict(base_kib=base, peak_kib=peak, received=stats.received,
                          dropped=dict(stats.dropped), **counts, **extra)), flush=True)

# The baseline is a live handler in an outage: its client built and its first put refused.
logger.info("%06d %s", 0, padding)
deadline = time.monotonic() + 30
while handler.stats.retried == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
gc.collect()
base = peak_seen = kib("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # restart VmHWM, the peak, from here
    peak_field = "VmHWM"
except OSError:
    peak_field = "VmRSS"  # no peak to restart: sample instead
for n in range(1, records):
    logger.info("%06d %s", n, padding)
    if n % 200 == 0:
        peak_seen = max(peak_seen, kib("VmRSS"))
report()
sys.stdin.readline()  # the parent has ended the outage
flushed = handler.flush(timeout=60)
peak_seen = max(peak_seen, kib("VmRSS"))
handler.close()
report(flushed=flushed)
"""


def _json_line(stream: IO[str], errors: IO[bytes]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        errors.seek(0)
        pytest.fail(f"the logging child died: {errors.read().decode(errors='replace')}")
    result: dict[str, Any] = json.loads(line)
    return result


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self/status").exists(),
    reason="resident memory is read from /proc/self/status (VmRSS, VmHWM): Linux only",
)
@pytest.mark.soak
def test_an_outage_longer_than_memory_keeps_rss_within_the_caps_and_loses_nothing(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    # 20 MB of messages in make test, 60 MB in make soak: 10 and 30 times what memory may hold
    records, size = soak(10_000, 30_000), 2000
    max_events, max_bytes = 1000, 2 * 1024 * 1024
    # What memory may hold beyond the baseline: the byte cap, generous room for the Python
    # objects around each of max_events records, and 12 MiB for one put of up to 1 MiB being
    # serialised, signed and sent by botocore, plus allocator slack.
    limit_kib = (max_bytes + max_events * 1024 + 12 * 1024 * 1024) // 1024
    group = "/rel/outage-rss"
    spool = tmp_path / "spool"
    spool.mkdir()
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    arguments = [group, str(spool), *map(str, (records, size, max_events, max_bytes))]
    with (
        (tmp_path / "stderr").open("w+b") as errors,
        subprocess.Popen(
            [sys.executable, "-c", _OUTAGE_CHILD, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, **aws.environment(REGION)},
        ) as child,
    ):
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            during = _json_line(child.stdout, errors)
            aws.injector.remove_fault(outage)
            child.stdin.write("\n")
            child.stdin.flush()
            after = _json_line(child.stdout, errors)
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
    grew = during["peak_kib"] - during["base_kib"]
    assert grew <= limit_kib, f"RSS grew {grew} KiB while logging through the outage"
    assert during["queued"] == during["received"] == records  # all kept, most on disk
    assert during["delivered"] == 0
    assert during["dropped"] == {}
    assert after["flushed"] is True
    grew = after["peak_kib"] - after["base_kib"]
    assert grew <= limit_kib, f"RSS grew {grew} KiB by the end of the backlog's delivery"
    assert after["delivered"] == after["received"] == records
    assert after["queued"] == after["replayed"] == after["corrupt"] == 0
    assert after["dropped"] == {}
    got = messages(group)
    assert collections.Counter(int(message[:6]) for message in got) == collections.Counter(
        range(records)
    )  # every record exactly once
    assert {len(message) for message in got} == {7 + size}
    assert list(spool.iterdir()) == []
