"""One benchmark case per call, printing a JSON result: run by benchmarks.run in subprocesses.

    python -m benchmarks.cases emit ENDPOINT ascii|nonascii
    python -m benchmarks.cases throughput ours|watchtower|raw|raw-novalidate ENDPOINT EVENTS
    python -m benchmarks.cases streams ours|ours-one|watchtower|raw ENDPOINT EVENTS STREAMS
    python -m benchmarks.cases memory HANDLERS ENDPOINT
    python -m benchmarks.cases body EVENTS
    python -m benchmarks.cases outage ours|watchtower ENDPOINT EVENTS
    python -m benchmarks.cases refresh ours|watchtower SECONDS
    python -m benchmarks.cases spool ENDPOINT   (see benchmarks.spool)

Every case talks to loopback only: the sink of benchmarks.sink, or moto's server. With
``BENCH_BASELINE_DIR`` set, ``watchtower_refresh`` is imported from that directory instead:
``make bench`` puts an earlier release's code there to measure it side by side.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.handlers
import os
import queue
import resource
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
import watchtower
from botocore.config import Config

if os.environ.get("BENCH_BASELINE_DIR"):  # before the first import of watchtower_refresh
    sys.path.insert(0, os.environ["BENCH_BASELINE_DIR"])

from watchtower_refresh import RefreshingCloudWatchLogHandler, refreshable_session

FORMAT = "%(levelname)s %(name)s %(message)s"
ROLE_ARN = "arn:aws:iam::123456789012:role/bench"


# About 1 KB of UTF-8 text in several scripts, as a localized application logs it.
_WORDS = (
    "\u00fcbergr\u00f6\u00dfe Bestellung \u2713 \u65e5\u672c\u8a9e\u306e\u30ed\u30b0 "
    "\u0437\u0430\u043a\u0430\u0437 \u03c0\u03b1\u03c1\u03b1\u03b3\u03b3\u03b5\u03bb\u03af\u03b1 "
)
_NON_ASCII = "commande n\u00b0 %d pass\u00e9e par le client %s \u2014 %d articles; " + _WORDS * 12


def cpu_per_record(handler: logging.Handler, passes: list[list[logging.LogRecord]]) -> float:
    """Microseconds of this thread's CPU per record that ``handler.handle`` took over
    ``passes`` (the sender's work, on its own threads, is not in it)."""
    started = time.thread_time()
    for batch in passes:
        for record in batch:
            handler.handle(record)
    return (time.thread_time() - started) / (len(passes) * len(passes[0])) * 1e6


def records(
    count: int = 1000, name: str | Callable[[int], str] = "app.orders", kind: str = "ascii"
) -> list[logging.LogRecord]:
    """Distinct, realistic records: about 60 bytes of ASCII message each, or 1 KB non-ASCII."""
    template = "order %d placed for customer %s with %d items" if kind == "ascii" else _NON_ASCII
    made = []
    for n in range(count):
        record = logging.LogRecord(
            name if isinstance(name, str) else name(n),
            logging.INFO,
            __file__,
            42,
            template,
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


def theirs(endpoint: str, **options: Any) -> watchtower.CloudWatchLogHandler:
    """watchtower's handler, sending to ``endpoint``."""
    client = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
    handler = watchtower.CloudWatchLogHandler(
        "bench", boto3_client=client, create_log_group=False, **options
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def sink_events(endpoint: str) -> int:
    """Events the sink has accepted so far."""
    with urllib.request.urlopen(endpoint, timeout=10) as response:
        return int(json.load(response)["events"])


def raw_client(endpoint: str, *, validate: bool = True) -> Any:
    """A botocore ``logs`` client as an application would build it, sending to ``endpoint``."""
    config = Config(parameter_validation=validate)
    return boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1", config=config)


def raw_batches(
    events: list[tuple[int, str]], count: int = 10_000, size: int = 1_048_576
) -> list[list[dict[str, Any]]]:
    """``events`` cut into PutLogEvents batches within the service's limits, as dicts."""
    batches: list[list[dict[str, Any]]] = [[]]
    held = 0
    for timestamp, message in events:
        cost = len(message.encode()) + 26
        if len(batches[-1]) >= count or held + cost > size:
            batches.append([])
            held = 0
        batches[-1].append({"timestamp": timestamp, "message": message})
        held += cost
    return [batch for batch in batches if batch]


def wait_for_sink(endpoint: str, count: int, timeout: float = 120.0) -> bool:
    """Wait until the sink has accepted ``count`` events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink_events(endpoint) >= count:
            return True
        time.sleep(0.01)
    return False


# ----------------------------------------------------------------------------- emit()


def case_emit(
    endpoint: str, kind: str = "ascii", rounds: int = 25, repeat: int = 5
) -> dict[str, Any]:
    """Cost of handle() in the caller's thread, per record, for several handlers, interleaved.

    Measured as the calling thread's CPU time (``time.thread_time``): the senders of ours and
    watchtower's deliver to the sink meanwhile, and the time they hold the GIL is theirs.
    Each round ends with an untimed ``flush()``, so that a handler's delivery does not run
    into the next handler's round, and each timed pass gets records made afresh (untimed):
    ours gives a record its trace attributes once, as a new record of an application's gets
    them. ``kind`` is ``ascii`` (about 60 bytes per message), ``nonascii`` (about 1 KB),
    ``trace``: ASCII records with OpenTelemetry's SDK loaded, ours outside a span, inside one
    and with ``trace_context`` off, or ``options``: ASCII records, ours with
    ``trace_context`` off, with ``buffer_at`` at the records' level outside a
    ``log_buffer()`` scope and inside one (every record held, then let go), and with
    ``metrics_interval``.
    """
    tracer: Any = None
    record_kind = "nonascii" if kind == "nonascii" else "ascii"
    stream = logging.StreamHandler(io.StringIO())
    stream.setFormatter(logging.Formatter(FORMAT))
    handlers: dict[str, logging.Handler] = {"watchtower-refresh": ours(endpoint)}
    spool_dir = tempfile.mkdtemp(prefix="bench-spool-")
    if kind == "trace":
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("bench")
        handlers["watchtower-refresh (in a span)"] = ours(endpoint)
        handlers["watchtower-refresh (trace_context off)"] = ours(endpoint, trace_context=False)
    elif kind == "options":
        # Each option's cost, in rounds of their own: more handlers in a round cost every
        # handler in it (QueueHandler's ratio too), so the targets' rounds keep their five.
        handlers["watchtower-refresh (trace_context off)"] = ours(endpoint, trace_context=False)
        # buffer_at at the records' level: each one looks for a scope
        handlers["watchtower-refresh (buffer_at, no scope)"] = ours(endpoint, buffer_at="INFO")
        handlers["watchtower-refresh (held in a scope)"] = ours(endpoint, buffer_at="INFO")
        # self-metrics: the sender's timer, nothing in emit()
        handlers["watchtower-refresh (metrics_interval)"] = ours(endpoint, metrics_interval=1)
    else:
        queued = logging.handlers.QueueHandler(queue.SimpleQueue())
        queued.setFormatter(logging.Formatter(FORMAT))
        handlers["watchtower-refresh (spool)"] = ours(endpoint, spool_dir=spool_dir)
        handlers["watchtower"] = theirs(endpoint)
        handlers["QueueHandler"] = queued
    handlers["StreamHandler (memory)"] = stream
    for handler in handlers.values():  # warm up: threads started, clients built
        for record in records(kind=record_kind):
            handler.handle(record)
    time.sleep(1.0)
    samples: dict[str, list[float]] = {name: [] for name in handlers}
    names = list(handlers)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            handler = handlers[name]
            passes = [records(kind=record_kind) for _ in range(repeat)]
            scope: Any = contextlib.nullcontext()
            if name.endswith("(in a span)"):
                scope = tracer.start_as_current_span("request")
            elif name.endswith("(held in a scope)"):
                from watchtower_refresh import log_buffer

                scope = log_buffer()  # held, then let go at the end: inside the timing
            with scope:
                samples[name].append(cpu_per_record(handler, passes))
            # Untimed: what this handler's threads still have to send is sent before the
            # next handler's round, so that their work falls in this handler's rounds only.
            handler.flush()
            stream.stream = io.StringIO()
            if "QueueHandler" in handlers:
                queued.queue = queue.SimpleQueue()
    base = samples["StreamHandler (memory)"]
    shutil.rmtree(spool_dir, ignore_errors=True)
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
    """Events per second and CPU per event, from handle() to the sink's receipt.

    The burst is logged faster than any sender delivers it; watchtower's queue is unbounded,
    so ours is given room for the whole burst (queue_max_events) to compare like for like.
    ``raw`` and ``raw-novalidate`` are the floor a handler is measured against: the same
    records formatted by the same formatter, then a plain ``put_log_events`` loop over
    full batches, with botocore's default configuration or without parameter validation
    (as the handler's own client runs).

    ``sender_us_per_event`` is the CPU time spent delivering, per event: for a handler, the
    process's CPU time less the logging thread's (formatting and queueing happen there);
    for the raw loop, the put loop's alone.
    """
    batch = records()
    if kind.startswith("raw"):
        return _raw_throughput(kind, endpoint, events, batch)
    handler: Any
    if kind == "ours":
        handler = ours(endpoint, queue_max_events=events + 1)
    elif kind == "ours-spool":  # every record written to disk and acknowledged
        spool_dir = tempfile.mkdtemp(prefix="bench-spool-")
        handler = ours(endpoint, queue_max_events=events + 1, spool_dir=spool_dir)
    else:
        handler = theirs(endpoint)
    handler.handle(batch[0])  # start the sender, build the client
    handler.flush()
    wait_for_sink(endpoint, 1)
    cpu, thread_cpu, started = time.process_time(), time.thread_time(), time.perf_counter()
    for n in range(events):
        handler.handle(batch[n % len(batch)])
    handler.flush()
    arrived = wait_for_sink(endpoint, events + 1)
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    logging_cpu = time.thread_time() - thread_cpu
    dropped = handler.stats.dropped_total if kind.startswith("ours") else 0
    if kind == "ours-spool":
        shutil.rmtree(spool_dir, ignore_errors=True)
    return {
        "events": events,
        "all_arrived": arrived,
        "dropped": dropped,
        "events_per_second": events / elapsed,
        "cpu_seconds_per_million": cpu_used / events * 1e6,
        "sender_us_per_event": max(0.0, cpu_used - logging_cpu) / events * 1e6,
    }


def _raw_throughput(
    kind: str, endpoint: str, events: int, batch: list[logging.LogRecord]
) -> dict[str, Any]:
    client = raw_client(endpoint, validate=kind == "raw")
    formatter = logging.Formatter(FORMAT)
    client.put_log_events(  # build the connection, as the handlers' warm-up does
        logGroupName="bench", logStreamName="raw", logEvents=[{"timestamp": 1, "message": "x"}]
    )
    wait_for_sink(endpoint, 1)
    cpu, started = time.process_time(), time.perf_counter()
    formatted = []
    for n in range(events):
        record = batch[n % len(batch)]
        formatted.append((int(record.created * 1000), formatter.format(record)))
    put_cpu = time.process_time()
    for chunk in raw_batches(formatted):
        client.put_log_events(logGroupName="bench", logStreamName="raw", logEvents=chunk)
    ended = time.process_time()
    arrived = wait_for_sink(endpoint, events + 1)
    elapsed = time.perf_counter() - started
    return {
        "events": events,
        "all_arrived": arrived,
        "dropped": 0,
        "events_per_second": events / elapsed,
        "cpu_seconds_per_million": (ended - cpu) / events * 1e6,
        "sender_us_per_event": (ended - put_cpu) / events * 1e6,
    }


# ----------------------------------------------------------------------------- many streams


def case_streams(kind: str, endpoint: str, events: int, streams: int) -> dict[str, Any]:
    """Events per second with one stream per logger (``{logger_name}``) on a slow service.

    Run against a sink with ``--latency``. Every stream exists before the clock starts (one
    record per logger, flushed), so only puts are timed. ``raw`` is one ``put_log_events``
    at a time, one full batch per stream, as a simple sequential sender would send.
    ``ours-one`` is our handler with one batch in flight at a time: how it sent before it
    sent several streams' batches at once, the baseline of the many-streams target.
    """
    names = [f"app.module{n:03d}" for n in range(streams)]
    batch = records(events, name=lambda n: names[n % streams])
    if kind == "raw":
        client = raw_client(endpoint, validate=False)
        formatter = logging.Formatter(FORMAT)
        started = time.perf_counter()
        by_stream: dict[str, list[tuple[int, str]]] = {}
        for record in batch:
            message = formatter.format(record)
            by_stream.setdefault(record.name, []).append((int(record.created * 1000), message))
        for stream, stream_events in by_stream.items():
            for chunk in raw_batches(stream_events):
                client.put_log_events(logGroupName="bench", logStreamName=stream, logEvents=chunk)
        arrived = wait_for_sink(endpoint, events)
    else:
        if kind == "ours-one":
            import watchtower_refresh._delivery.generations

            watchtower_refresh._delivery.generations.MAX_IN_FLIGHT = 1  # read when a sender starts
        handler: Any = (
            ours(endpoint, log_stream_name="{logger_name}", queue_max_events=events + streams)
            if kind.startswith("ours")
            else theirs(endpoint, log_stream_name="{logger_name}")
        )
        for record in records(streams, name=lambda n: names[n]):  # create every stream
            handler.handle(record)
        handler.flush()
        wait_for_sink(endpoint, streams)
        started = time.perf_counter()
        for record in batch:
            handler.handle(record)
        handler.flush()
        arrived = wait_for_sink(endpoint, events + streams)
    elapsed = time.perf_counter() - started
    return {
        "events": events,
        "streams": streams,
        "all_arrived": arrived,
        "events_per_second": events / elapsed,
    }


# ----------------------------------------------------------------------------- memory


def case_memory(handlers: int, endpoint: str) -> dict[str, Any]:
    """RSS growth of ``handlers`` handlers in one process, each having delivered a record.

    Each handler builds its own session and client on its sender thread; what they can
    share (botocore's parsed service data) decides how the cost grows with their number.
    """
    before = _rss_mib()
    made = []
    for n in range(handlers):
        handler = ours(endpoint)
        handler.handle(records(1, name=f"app.handler{n}")[0])
        made.append(handler)
    for handler in made:
        handler.flush()
    arrived = wait_for_sink(endpoint, handlers)
    return {"handlers": handlers, "rss_growth_mib": _rss_mib() - before, "all_arrived": arrived}


# ----------------------------------------------------------------------------- body


def case_body(events: int, rounds: int = 15) -> dict[str, Any]:
    """CPU of one PutLogEvents of ``events`` events: its body, and the whole call.

    ``body``: botocore's JSON serializer against ``_aws.wire.build_body``, on the same events.
    ``put``: ``put_log_events`` against ``_aws.wire.put_events`` (client without parameter
    validation, as the handler's), everything but the network: a ``before-send`` hook
    answers instead of the service, after signing. Paired round by round; ratios of medians.
    """
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    from watchtower_refresh._aws.wire import build_body, put_events

    formatter = logging.Formatter(FORMAT)
    pairs = [(int(r.created * 1000), formatter.format(r)) for r in records(events)]
    client: Any = botocore.session.get_session().create_client(
        "logs",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(parameter_validation=False),
    )

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield b"{}"

    def answer(**_: Any) -> AWSResponse:
        return AWSResponse("http://127.0.0.1:9", 200, HTTPHeaders(), _Raw())

    client.meta.events.register("before-send.cloudwatch-logs.PutLogEvents", answer)
    model = client.meta.service_model.operation_model("PutLogEvents")
    serializer = client._serializer  # what put_log_events runs; measured on its own

    def botocore_body() -> object:
        params = {
            "logGroupName": "bench",
            "logStreamName": "s",
            "logEvents": [{"timestamp": t, "message": m} for t, m in pairs],
        }
        return serializer.serialize_to_request(params, model)

    def ordinary_put() -> object:
        logs = [{"timestamp": t, "message": m} for t, m in pairs]
        return client.put_log_events(logGroupName="bench", logStreamName="s", logEvents=logs)

    contenders: dict[str, Callable[[], object]] = {
        "botocore serializer": botocore_body,
        "build_body": lambda: build_body("bench", "s", pairs),
        "put_log_events": ordinary_put,
        "put_events": lambda: put_events(client, "bench", "s", pairs),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for contender in contenders.values():
        contender()  # warm up
    for _ in range(rounds):
        for name, contender in contenders.items():
            started = time.thread_time()
            contender()
            samples[name].append((time.thread_time() - started) * 1e3)
    ms = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "events": events,
        "ms": ms,
        "body_ratio": ms["build_body"] / ms["botocore serializer"],
        "put_ratio": ms["put_events"] / ms["put_log_events"],
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


def case_spool(*args: Any) -> dict[str, Any]:
    """The spool's append and replay (benchmarks.spool; the spool is not in every release)."""
    from benchmarks.spool import case_spool as run

    return run(*args)


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "emit": case_emit,
    "throughput": case_throughput,
    "streams": case_streams,
    "memory": case_memory,
    "body": case_body,
    "outage": case_outage,
    "refresh": case_refresh,
    "spool": case_spool,
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
