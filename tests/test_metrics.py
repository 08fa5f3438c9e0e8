"""Self-metrics in Embedded Metric Format: read back from the fake AWS, and against a stub."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REGION, logger_for, run_python
from tests.test_pipeline import Settings, StubTarget, event
from watchtower_refresh import ConfigurationError, DeliveryStats, RefreshingCloudWatchLogHandler
from watchtower_refresh._core.ledger import Ledger
from watchtower_refresh._delivery.metrics import STREAM_PREFIX, document
from watchtower_refresh._delivery.pipeline import Pipeline
from watchtower_refresh._report import Reporter
from watchtower_refresh.testing import FakeAWS, Fault

UNITS = {"Count", "Seconds"}
COUNTERS = {"Delivered", "Dropped", "Retried", "CredentialRefreshes"}


def check_emf(
    message: str, *, group: str, namespace: str = "WatchtowerRefresh", recent: bool = True
) -> dict[str, Any]:
    """Parse ``message`` and check it against the EMF specification's structure."""
    doc = json.loads(message)
    assert isinstance(doc, dict)
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int)
    if recent:
        assert abs(meta["Timestamp"] - time.time() * 1000) < 600_000
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert len(directives) == 1
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert directive["Namespace"] == namespace
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(doc[key], str)
                assert doc[key].strip()
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) == {"Name", "Unit"}
            assert metric["Unit"] in UNITS
            value = doc[metric["Name"]]
            assert isinstance(value, (int, float))
            assert not isinstance(value, bool)
    assert doc["LogGroup"] == group
    return doc


def metric_streams(client: Any, group: str) -> list[str]:
    try:
        streams = client.describe_log_streams(logGroupName=group, logStreamNamePrefix=STREAM_PREFIX)
    except client.exceptions.ResourceNotFoundException:
        return []
    return [stream["logStreamName"] for stream in streams["logStreams"]]


def metric_events(client: Any, group: str) -> list[dict[str, Any]]:
    """Every self-metrics event of ``group``, checked as EMF, in time order."""
    docs = []
    for stream in metric_streams(client, group):
        answer = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
        docs += [check_emf(e["message"], group=group) for e in answer["events"]]
    return sorted(docs, key=lambda doc: doc["_aws"]["Timestamp"])


def wait_for_events(client: Any, group: str, count: int, timeout: float = 20.0) -> None:
    limit = time.monotonic() + timeout
    while len(metric_events(client, group)) < count:
        assert time.monotonic() < limit, f"fewer than {count} metric events in {timeout} s"
        time.sleep(0.2)


def total(docs: list[dict[str, Any]], name: str) -> float:
    return float(sum(doc.get(name, 0) for doc in docs))


def assert_sums_are_stats(docs: list[dict[str, Any]], stats: DeliveryStats) -> None:
    assert total(docs, "Delivered") == stats.delivered
    assert total(docs, "Dropped") == stats.dropped_total
    assert total(docs, "Retried") == stats.retried
    assert total(docs, "CredentialRefreshes") == stats.credential_refreshes
    for reason, count in stats.dropped.items():
        assert total(docs, f"Dropped_{reason}") == count
    by_reason = {k for doc in docs for k in doc if k.startswith("Dropped_")}
    assert by_reason <= {f"Dropped_{reason}" for reason in stats.dropped}


@pytest.fixture
def logs(aws: FakeAWS) -> Any:
    return boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)


# ----------------------------------------------------------------------------- the fake AWS


def test_metric_events_are_emf_on_their_own_stream_and_add_up_to_stats(
    aws: FakeAWS, make_handler: Any, logs: Any, messages: Callable[[str], list[str]]
) -> None:
    group = "/metrics/healthy"
    handler = make_handler(group, metrics_interval=1, log_stream_name="records")
    logger = logger_for(handler)
    for index in range(30):
        logger.info("record %d", index)
    with pytest.warns(Warning, match="empty"):
        logger.info("")  # dropped as empty
    wait_for_events(logs, group, 2)
    for index in range(30, 40):
        logger.info("record %d", index)
    handler.close()
    stats = handler.stats
    docs = metric_events(logs, group)
    assert len(docs) >= 3
    assert_sums_are_stats(docs, stats)
    assert (stats.delivered, stats.dropped) == (40, {"empty": 1})
    assert stats.received == 41  # the metric events are not records
    assert docs[-1]["Final"] is True
    assert docs[-1]["QueueDepth"] == 0
    assert not any(doc["Final"] for doc in docs[:-1])
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["LogGroup"]]
    # One stream of this process's own, apart from the records'.
    [stream] = metric_streams(logs, group)
    assert stream.startswith(f"{STREAM_PREFIX}/")
    assert stream.endswith(f"/{docs[0]['ProcessId']}")
    records = logs.get_log_events(logGroupName=group, logStreamName="records", startFromHead=True)
    assert sorted(e["message"] for e in records["events"]) == sorted(
        f"record {i}" for i in range(40)
    )


def test_an_outage_that_drops_records_is_in_the_metrics(
    aws: FakeAWS, make_handler: Any, logs: Any
) -> None:
    group = "/metrics/outage"
    handler = make_handler(group, metrics_interval=1, queue_max_events=20)
    logger = logger_for(handler)
    logger.info("before the outage")
    assert handler.flush(timeout=10)
    outage = aws.injector.add_fault(
        Fault("ServiceUnavailableException", action="PutLogEvents", status=503)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(100):
            logger.info("during the outage %d", index)
        # An interval passes: its event fails, and its counts wait for the next.
        limit = time.monotonic() + 20
        while not any("self-metrics" in str(w.message) for w in caught):
            assert time.monotonic() < limit, "no self-metrics event failed"
            time.sleep(0.1)
    said = " ".join(str(w.message) for w in caught)
    assert "the queue of log group /metrics/outage is full" in said
    assert "self-metrics event for log group /metrics/outage was not written" in said
    assert "its counts go into the next event" in said
    aws.injector.remove_fault(outage)
    assert handler.flush(timeout=30)
    handler.close()
    stats = handler.stats
    assert stats.delivered == 21
    assert stats.dropped == {"queue_full": 80}
    assert stats.retried > 0
    docs = metric_events(logs, group)
    assert_sums_are_stats(docs, stats)
    assert total(docs, "Dropped_queue_full") == 80


def test_metrics_are_off_by_default(aws: FakeAWS, make_handler: Any, logs: Any) -> None:
    handler = make_handler("/metrics/off")
    logger_for(handler).info("one record")
    handler.close()
    assert handler.stats.delivered == 1
    assert metric_streams(logs, "/metrics/off") == []
    assert handler.options.metrics_interval is None


def test_use_queues_false_writes_metrics_on_a_thread_of_its_own(
    aws: FakeAWS, make_handler: Any, logs: Any
) -> None:
    group = "/metrics/sync"
    handler = make_handler(group, metrics_interval=1, use_queues=False)
    logger = logger_for(handler)
    for index in range(5):
        logger.info("sync %d", index)
    # Nothing is logged meanwhile: the periodic event is written by the sender's thread.
    wait_for_events(logs, group, 1)
    handler.close()
    docs = metric_events(logs, group)
    assert len(docs) >= 2
    assert docs[-1]["Final"] is True
    assert_sums_are_stats(docs, handler.stats)
    assert handler.stats.delivered == 5


def test_dict_config_text_and_nothing_at_construction(aws: FakeAWS, logs: Any) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "cloudwatch": {
                    "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                    "log_group_name": "/metrics/named",
                    "metrics_interval": "1.5",
                    "metrics_namespace": "Orders/Logging",
                },
            },
            "loggers": {"named": {"handlers": ["cloudwatch"], "level": "INFO"}},
        }
    )
    [handler] = logging.getLogger("named").handlers
    assert isinstance(handler, RefreshingCloudWatchLogHandler)
    try:
        assert handler.options.metrics_interval == 1.5
        time.sleep(0.2)
        assert handler.threads == []  # no timer before the first record
        assert sum(aws.injector.counts.values()) == 0
        logging.getLogger("named").info("one")
    finally:
        handler.close()
        logging.getLogger("named").handlers = []
    [stream] = metric_streams(logs, "/metrics/named")
    answer = logs.get_log_events(logGroupName="/metrics/named", logStreamName=stream)
    docs = [
        check_emf(e["message"], group="/metrics/named", namespace="Orders/Logging")
        for e in answer["events"]
    ]
    assert total(docs, "Delivered") == 1
    assert docs[-1]["Final"] is True


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"metrics_interval": "soon"}, "metrics_interval must be a number of seconds"),
        ({"metrics_interval": 0.5}, "at least 1, or 0 \\(or off\\)"),
        ({"metrics_interval": -5}, "metrics_interval must be"),
        ({"metrics_interval": "inf"}, "metrics_interval must be"),
        ({"metrics_interval": True}, "metrics_interval must be"),
        ({"metrics_interval": 60, "metrics_namespace": "AWS/Logs"}, "metrics_namespace"),
        ({"metrics_namespace": ":colon"}, "metrics_namespace ':colon' is invalid"),
        ({"metrics_namespace": ""}, "metrics_namespace '' is invalid"),
        ({"metrics_namespace": "x" * 256}, "1 to 255 characters"),
        ({"metrics_namespace": "café"}, "metrics_namespace 'café' is invalid"),
    ],
)
def test_bad_values_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RefreshingCloudWatchLogHandler("grp", **options)


@pytest.mark.parametrize("off", [None, 0, "0", "off", "", "none"])
def test_off_values(off: object) -> None:
    handler = RefreshingCloudWatchLogHandler("grp", metrics_interval=off)  # type: ignore[arg-type]
    assert handler.options.metrics_interval is None


# ----------------------------------------------------------------------------- the document


def test_the_document_carries_differences_and_each_reason_once() -> None:
    since = DeliveryStats(delivered=10, dropped={"queue_full": 3}, retried=1)
    now = DeliveryStats(
        delivered=15, dropped={"queue_full": 5, "AccessDeniedException": 2}, retried=1, queued=4
    )
    doc = document(
        group="/g",
        namespace="N",
        now_ms=10_000,
        stats=now,
        since=since,
        oldest_ms=7_500,
        final=False,
    )
    check_emf(json.dumps(doc), group="/g", namespace="N", recent=False)
    assert doc["Delivered"] == 5
    assert doc["Dropped"] == 4
    assert doc["Dropped_queue_full"] == 2
    assert doc["Dropped_AccessDeniedException"] == 2
    assert doc["Retried"] == 0
    assert doc["QueueDepth"] == 4
    assert doc["OldestQueuedAge"] == 2.5
    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]  # type: ignore[index]
    assert names.count("Dropped_queue_full") == 1
    units = {m["Name"]: m["Unit"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}  # type: ignore[index]
    assert units["OldestQueuedAge"] == "Seconds"
    assert units["Delivered"] == "Count"


def test_too_many_reasons_fold_into_other_within_100_metrics() -> None:
    dropped = {f"Code{n}": 1 for n in range(150)}
    doc = document(
        group="/g",
        namespace="N",
        now_ms=1,
        stats=DeliveryStats(dropped=dropped),
        since=DeliveryStats(),
        oldest_ms=None,
        final=True,
    )
    metrics = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]  # type: ignore[index]
    assert len(metrics) <= 100
    assert sum(v for k, v in doc.items() if k.startswith("Dropped_")) == 150  # type: ignore[misc]


# ----------------------------------------------------------------------------- against a stub


class MetricsService:
    """Accepts records; refuses the first ``refuse`` metric events."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.accepted: list[dict[str, Any]] = []
        self.records = 0

    def put(self, client: Any, stream: str, batch: Any) -> Any:
        if stream.startswith(STREAM_PREFIX):
            if self.refuse:
                self.refuse -= 1
                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutLogEvents"
                )
            self.accepted += [json.loads(e[2]) for e in batch]
        else:
            self.records += len(batch)
        return {}


@pytest.fixture
def stub() -> Iterator[Callable[..., tuple[Pipeline, MetricsService]]]:
    built: list[Pipeline] = []

    def build(refuse: int = 0, **options: Any) -> tuple[Pipeline, MetricsService]:
        service = MetricsService(refuse)
        lock = threading.RLock()
        settings = Settings(metrics_interval=0.05, **options)
        pipeline = Pipeline(settings, lock, StubTarget(), service.put, Reporter(lock))
        built.append(pipeline)
        return pipeline, service

    yield build
    for pipeline in built:
        pipeline.close_by(time.monotonic() + 2)


def feed(pipeline: Pipeline, count: int) -> None:
    for index in range(count):
        pipeline.admit_slow(*event(f"r{index}"))


def test_a_refused_event_passes_its_counts_to_the_next(stub: Any) -> None:
    pipeline, service = stub(refuse=3)
    with pytest.warns(Warning, match="self-metrics event .* not written"):
        feed(pipeline, 10)
        limit = time.monotonic() + 5
        while service.refuse and time.monotonic() < limit:
            time.sleep(0.01)
        feed(pipeline, 5)
        pipeline.close_by(time.monotonic() + 2)
    stats = pipeline.ledger.snapshot()
    assert service.records == stats.delivered == 15
    assert service.refuse == 0
    assert service.accepted[-1]["Final"] is True
    assert_sums_are_stats(service.accepted, stats)


def test_no_event_before_the_first_record_nor_after_close(stub: Any) -> None:
    pipeline, service = stub()
    time.sleep(0.2)
    assert pipeline.sender is None
    assert service.accepted == []
    feed(pipeline, 1)
    pipeline.close_by(time.monotonic() + 2)
    written = len(service.accepted)
    assert written >= 1
    time.sleep(0.2)
    assert len(service.accepted) == written


# ----------------------------------------------------------------------------- processes

_FORK_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from watchtower_refresh import RefreshingCloudWatchLogHandler

    handler = RefreshingCloudWatchLogHandler(sys.argv[1], metrics_interval=1, send_interval=0.05)
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("parent before fork")
    pid = os.fork()
    if pid == 0:
        for n in range(3):
            logger.info("child %d", n)
        handler.close()
        print(json.dumps({"pid": os.getpid(), "delivered": handler.stats.delivered}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    logger.info("parent after fork")
    handler.close()
    print(json.dumps({"pid": os.getpid(), "delivered": handler.stats.delivered}), flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_its_own_metrics_stream(aws: FakeAWS, logs: Any) -> None:
    group = "/metrics/fork"
    result = run_python(aws, "-c", _FORK_SCRIPT, group)
    assert result.returncode == 0, result.stderr
    delivered = {d["pid"]: d["delivered"] for d in map(json.loads, result.stdout.splitlines())}
    assert sorted(delivered.values()) == [2, 3]  # the child counts only its own records
    streams = metric_streams(logs, group)
    assert sorted(s.rsplit("/", 1)[1] for s in streams) == sorted(map(str, delivered))
    for stream in streams:
        answer = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
        docs = [check_emf(e["message"], group=group) for e in answer["events"]]
        pid = int(stream.rsplit("/", 1)[1])
        assert {doc["ProcessId"] for doc in docs} == {pid}
        assert total(docs, "Delivered") == delivered[pid]
        assert docs[-1]["Final"] is True


# ----------------------------------------------------------------------------- the docs

DOCS = Path(__file__).parent.parent / "docs"
EXAMPLES = Path(__file__).parent.parent / "examples"


def test_the_documented_event_is_what_the_handler_writes() -> None:
    page = (DOCS / "how-it-behaves.md").read_text()
    block = re.search(r"```json\n(.*?)```", page, re.S)
    assert block is not None
    shown = json.loads(block.group(1))
    written = document(
        group="/app/orders",
        namespace="WatchtowerRefresh",
        now_ms=shown["_aws"]["Timestamp"],
        stats=DeliveryStats(delivered=1200, dropped={"queue_full": 501}, retried=14, queued=100),
        since=DeliveryStats(),
        oldest_ms=shown["_aws"]["Timestamp"] - 8200,
        final=False,
    )
    written["ProcessId"] = shown["ProcessId"]
    assert json.dumps(shown) == json.dumps(written)  # the same fields, in the same order
    check_emf(json.dumps(shown), group="/app/orders", recent=False)


def test_the_documented_alarm_watches_a_metric_the_handler_writes() -> None:
    script = (EXAMPLES / "alarm_on_dropped_records.sh").read_text()
    flags = dict(re.findall(r"--([a-z-]+) (\S+)", script))
    assert (
        flags["namespace"]
        == RefreshingCloudWatchLogHandler("/app/orders").options.metrics_namespace
    )
    assert flags["metric-name"] == "Dropped"
    assert flags["dimensions"] == "Name=LogGroup,Value=/app/orders"
    doc = document(
        group="/app/orders",
        namespace=flags["namespace"],
        now_ms=0,
        stats=DeliveryStats(),
        since=DeliveryStats(),
        oldest_ms=None,
        final=False,
    )
    [directive] = doc["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert {"Name": "Dropped", "Unit": "Count"} in directive["Metrics"]
    assert directive["Dimensions"] == [["LogGroup"]]
    assert flags["statistic"] == "Sum"  # the counts are per event: their sum is the loss


class StalledService:
    """Accepts metrics; throttles records until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.accepted: list[dict[str, Any]] = []

    def put(self, client: Any, stream: str, batch: Any) -> Any:
        if stream.startswith(STREAM_PREFIX):
            self.accepted += [json.loads(e[2]) for e in batch]
            return {}
        if not self.release.is_set():
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutLogEvents"
            )
        return {}


def test_queue_depth_and_age_show_a_stalled_delivery() -> None:
    service = StalledService()
    lock = threading.RLock()
    settings = Settings(metrics_interval=0.05)
    pipeline = Pipeline(settings, lock, StubTarget(), service.put, Reporter(lock))
    try:
        feed(pipeline, 7)
        limit = time.monotonic() + 10
        while not any(doc["OldestQueuedAge"] >= 0.2 for doc in service.accepted):
            assert time.monotonic() < limit, "no event showed the stalled records"
            time.sleep(0.02)
        stalled = [doc for doc in service.accepted if doc["OldestQueuedAge"] >= 0.2]
        assert stalled[0]["QueueDepth"] == 7
    finally:
        service.release.set()
        pipeline.close_by(time.monotonic() + 5)
    final = service.accepted[-1]
    assert final["Final"] is True
    assert (final["QueueDepth"], final["OldestQueuedAge"]) == (0, 0.0)
    stats = pipeline.ledger.snapshot()
    assert stats.delivered == 7
    assert stats.retried > 0
    assert_sums_are_stats(service.accepted, stats)


def test_one_event_at_a_time_so_none_carries_counts_twice() -> None:
    entered, release = threading.Event(), threading.Event()
    written: list[dict[str, Any]] = []

    def slow_put(client: Any, stream: str, batch: Any) -> Any:
        if stream.startswith(STREAM_PREFIX):
            entered.set()
            release.wait(5)
            written.extend(json.loads(e[2]) for e in batch)
        return {}

    lock = threading.RLock()
    pipeline = Pipeline(Settings(metrics_interval=60), lock, StubTarget(), slow_put, Reporter(lock))
    metrics = pipeline.metrics
    assert metrics is not None
    feed(pipeline, 3)
    assert pipeline.wait_flushed(pipeline.request_flush(), time.monotonic() + 5)
    first = threading.Thread(target=metrics.send, args=(threading.Event(),))
    first.start()
    assert entered.wait(5)
    # An older generation's event is still out: a second one now would carry the same counts.
    assert metrics.send(threading.Event()) is False
    release.set()
    first.join(5)
    assert metrics.send(threading.Event(), final=True) is True
    assert [doc["Delivered"] for doc in written] == [3, 0]
    pipeline.close_by(time.monotonic() + 2)


def test_an_internal_error_is_said_and_the_counts_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[dict[str, Any]] = []

    def put(client: Any, stream: str, batch: Any) -> Any:
        if stream.startswith(STREAM_PREFIX):
            written.extend(json.loads(e[2]) for e in batch)
        return {}

    lock = threading.RLock()
    pipeline = Pipeline(Settings(metrics_interval=60), lock, StubTarget(), put, Reporter(lock))
    metrics = pipeline.metrics
    assert metrics is not None
    feed(pipeline, 2)
    assert pipeline.wait_flushed(pipeline.request_flush(), time.monotonic() + 5)
    with monkeypatch.context() as patched:
        patched.setattr(Ledger, "oldest_timestamp", lambda self: 1 / 0)
        with pytest.warns(Warning, match="internal error while writing self-metrics"):
            assert metrics.send(threading.Event()) is False
    assert metrics.send(threading.Event()) is True
    assert [doc["Delivered"] for doc in written] == [2]
    pipeline.close_by(time.monotonic() + 2)
