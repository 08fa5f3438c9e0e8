"""One benchmark case per call, printing a JSON result: run by benchmarks.run in subprocesses.

    python -m benchmarks.cases emit ENDPOINT
    python -m benchmarks.cases throughput ours|watchtower ENDPOINT EVENTS
    python -m benchmarks.cases outage ours|watchtower ENDPOINT EVENTS
    python -m benchmarks.cases refresh ours|watchtower SECONDS

Every case talks to loopback only: the sink of benchmarks.sink, or moto's server.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import queue
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

import boto3
import watchtower

from watchtower_refresh import RefreshingCloudWatchLogHandler, refreshable_session

FORMAT = "%(levelname)s %(name)s %(message)s"
ROLE_ARN = "arn:aws:iam::123456789012:role/bench"


def records(count: int = 1000) -> list[logging.LogRecord]:
    """Distinct, realistic records: about 60 bytes of message each."""
    made = []
    for n in range(count):
        record = logging.LogRecord(
            "app.orders",
            logging.INFO,
            __file__,
            42,
            "order %d placed for customer %s with %d items",
            (n, f"c-{n % 97:04d}", n % 7 + 1),
            None,
        )
        made.append(record)
    return made


def ours(endpoint: str, **options: Any) -> RefreshingCloudWatchLogHandler:
    """Our handler, sending to ``endpoint``."""
    handler = RefreshingCloudWatchLogHandler(
        "bench", endpoint_url=endpoint, region_name="us-east-1", **options
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def theirs(endpoint: str) -> watchtower.CloudWatchLogHandler:
    """watchtower's handler, sending to ``endpoint``."""
    client = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
    handler = watchtower.CloudWatchLogHandler("bench", boto3_client=client, create_log_group=False)
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def sink_events(endpoint: str) -> int:
    """Events the sink has accepted so far."""
    with urllib.request.urlopen(endpoint, timeout=10) as response:
        return int(json.load(response)["events"])


def wait_for_sink(endpoint: str, count: int, timeout: float = 120.0) -> bool:
    """Wait until the sink has accepted ``count`` events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink_events(endpoint) >= count:
            return True
        time.sleep(0.01)
    return False


# ----------------------------------------------------------------------------- emit()


def case_emit(endpoint: str, rounds: int = 25, repeat: int = 5) -> dict[str, Any]:
    """Cost of handle() in the caller's thread, per record, for four handlers, interleaved.

    Measured as the calling thread's CPU time (``time.thread_time``): the senders of ours and
    watchtower's deliver to the sink meanwhile, and the time they hold the GIL is theirs.
    """
    batch = records()
    stream = logging.StreamHandler(io.StringIO())
    stream.setFormatter(logging.Formatter(FORMAT))
    queued = logging.handlers.QueueHandler(queue.SimpleQueue())
    queued.setFormatter(logging.Formatter(FORMAT))
    handlers: dict[str, logging.Handler] = {
        "watchtower-refresh": ours(endpoint),
        "watchtower": theirs(endpoint),
        "StreamHandler (memory)": stream,
        "QueueHandler": queued,
    }
    for handler in handlers.values():  # warm up: threads started, clients built
        for record in batch:
            handler.handle(record)
    time.sleep(1.0)
    samples: dict[str, list[float]] = {name: [] for name in handlers}
    names = list(handlers)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            handler = handlers[name]
            started = time.thread_time()
            for _ in range(repeat):
                for record in batch:
                    handler.handle(record)
            samples[name].append((time.thread_time() - started) / (repeat * len(batch)) * 1e6)
            stream.stream = io.StringIO()
            queued.queue = queue.SimpleQueue()
    base = samples["StreamHandler (memory)"]
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        # paired within each round, so the machine's drift between rounds cancels out
        "ratio_to_stream": {
            name: statistics.median(v / b for v, b in zip(values, base, strict=True))
            for name, values in samples.items()
        },
    }


# ----------------------------------------------------------------------------- delivery


def case_throughput(kind: str, endpoint: str, events: int) -> dict[str, Any]:
    """Events per second and CPU per million events, from handle() to the sink's receipt.

    The burst is logged faster than any sender delivers it; watchtower's queue is unbounded,
    so ours is given room for the whole burst (queue_max_events) to compare like for like.
    """
    handler: Any = (
        ours(endpoint, queue_max_events=events + 1) if kind == "ours" else theirs(endpoint)
    )
    batch = records()
    handler.handle(batch[0])  # start the sender, build the client
    handler.flush()
    wait_for_sink(endpoint, 1)
    cpu, started = time.process_time(), time.perf_counter()
    for n in range(events):
        handler.handle(batch[n % len(batch)])
    handler.flush()
    arrived = wait_for_sink(endpoint, events + 1)
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    dropped = handler.stats.dropped_total if kind == "ours" else 0
    return {
        "events": events,
        "all_arrived": arrived,
        "dropped": dropped,
        "events_per_second": events / elapsed,
        "cpu_seconds_per_million": cpu_used / events * 1e6,
    }


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_outage(kind: str, endpoint: str, events: int) -> dict[str, Any]:
    """RSS growth while every put fails: ``events`` records logged into an outage."""
    warnings.simplefilter("ignore")
    batch = records()
    handler: Any = ours(endpoint) if kind == "ours" else theirs(endpoint)
    handler.handle(batch[0])
    time.sleep(0.5)
    before = _rss_mib()
    peak = before
    for n in range(events):
        handler.handle(batch[n % len(batch)])
        if n % 10_000 == 0:
            peak = max(peak, _rss_mib())
    time.sleep(1.0)
    peak = max(peak, _rss_mib())
    result: dict[str, Any] = {"events": events, "rss_growth_mib": peak - before}
    if isinstance(handler, RefreshingCloudWatchLogHandler):
        stats = handler.stats
        result.update(
            held=stats.queued,
            dropped_and_counted=stats.dropped_total,
            cap_events=handler.queue_max_events,
            cap_bytes=handler.queue_max_bytes,
        )
    else:
        result.update(held=sum(q.qsize() for q in handler.queues.values()), dropped_and_counted=0)
    return result


# ----------------------------------------------------------------------------- refresh


def case_refresh(kind: str, seconds: int, every: int = 10) -> dict[str, Any]:
    """AssumeRole calls while logging for ``seconds`` simulated seconds with 900 s tokens."""
    import botocore.credentials

    from watchtower_refresh.testing import FakeAWS, FakeClock

    clock = FakeClock()
    # botocore's refresh checks ask botocore.credentials._local_now at call time; the
    # simulation moves that clock and the fake STS's together.
    botocore.credentials._local_now = clock  # type: ignore[attr-defined]
    with FakeAWS(clock=clock) as aws, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(aws.environment())
        config = os.path.join(tmp, "config")
        with open(config, "w", encoding="ascii") as out:
            out.write(
                f"[profile bench-role]\nrole_arn = {ROLE_ARN}\n"
                "credential_source = Environment\nduration_seconds = 900\nregion = us-east-1\n"
            )
        os.environ["AWS_CONFIG_FILE"] = config
        handler: Any
        if kind == "ours":
            handler = RefreshingCloudWatchLogHandler(
                "bench",
                session_factory=lambda: refreshable_session(
                    ROLE_ARN, duration_seconds=900, clock=clock
                ),
            )
        else:
            handler = watchtower.CloudWatchLogHandler("bench", boto3_profile_name="bench-role")
        batch = records()
        for tick in range(seconds // every):
            handler.handle(batch[tick % len(batch)])
            handler.flush()
            clock.advance(every)
        calls = aws.injector.counts["AssumeRole"]
        expired = aws.injector.counts["ExpiredTokenException"]
    return {
        "simulated_seconds": seconds,
        "puts": seconds // every,
        "assume_role_calls": calls,
        "assume_role_per_hour": calls * 3600 / seconds,
        "expired_token_answers": expired,
    }


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "emit": case_emit,
    "throughput": case_throughput,
    "outage": case_outage,
    "refresh": case_refresh,
}


def main(argv: list[str]) -> None:
    """Run one case and print its result as JSON on stdout's last line."""
    logging.getLogger("botocore").setLevel(logging.WARNING)
    name, *args = argv
    converted = [int(a) if a.isdigit() else a for a in args]
    result = CASES[name](*converted)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for handlers' exit-time delivery: the case is over


if __name__ == "__main__":
    main(sys.argv[1:])
