"""The delivery pipeline against a stub destination: no moto, no server, no network.

Records go in through the pipeline's admission; each put is answered by a script. The
lifecycle, the sender generations, the deadlines and the accounting are checked directly,
in milliseconds, as OpenTelemetry's batch processor is tested against a mock exporter.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from watchtower_refresh._core.events import EVENT_OVERHEAD, Event
from watchtower_refresh._core.reasons import DropReason
from watchtower_refresh._delivery.deliver import deliver_batch
from watchtower_refresh._delivery.pipeline import Pipeline, State
from watchtower_refresh._report import Reporter

Answer = Callable[[str, Sequence[Event]], Any]


@dataclasses.dataclass(frozen=True)
class Settings:
    log_group_name: str = "/stub/group"
    use_queues: bool = True
    send_interval: float = 0.01
    max_batch_size: int = 1_048_576
    max_batch_count: int = 10_000
    max_message_size: int = 1_048_576
    large_events: str = "truncate"
    queue_max_events: int = 1_000
    queue_max_bytes: int = 1 << 20
    flush_timeout: float = 2.0
    create_log_group: bool = True
    create_log_stream: bool = True
    spool_dir: str | None = None
    spool_max_bytes: int = 1 << 20
    spool_fsync: bool = False
    metrics_interval: float | None = None
    metrics_namespace: str = "WatchtowerRefresh"
    log_group_retention_days: int | None = None
    drop_markers: bool = False  # what the service accepted is records only, here


class StubTarget:
    """A destination that records the time each attempt was given."""

    refreshable = True

    def __init__(self) -> None:
        self.within: list[float | None] = []

    def client(self, within: float | None = None) -> Any:
        self.within.append(within)
        return object()

    def prepare(self, client: Any, stream: str) -> None:
        return None

    def discard_client(self) -> None:
        return None

    def forget(self, stream: str) -> None:
        return None


class Service:
    """Scripted answers to puts, and what was accepted."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.script: list[Answer] = []
        self.lock = threading.Lock()

    def put(self, client: Any, stream: str, batch: Sequence[Event]) -> Any:
        with self.lock:
            answer = self.script.pop(0) if self.script else None
        if answer is not None:
            return answer(stream, batch)
        with self.lock:
            self.accepted.extend(event[2] for event in batch)
        return {}


def error(code: str) -> Answer:
    def answer(stream: str, batch: Sequence[Event]) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": code}}, "PutLogEvents")

    return answer


def event(message: str) -> tuple[Event, int]:
    return ("stream", int(time.time() * 1000), message, len(message)), len(message) + EVENT_OVERHEAD


_BUILT: list[Pipeline] = []


def build(**options: Any) -> tuple[Pipeline, Service, StubTarget]:
    service, target = Service(), StubTarget()
    lock = threading.RLock()
    pipeline = Pipeline(Settings(**options), lock, target, service.put, Reporter(lock))
    _BUILT.append(pipeline)
    return pipeline, service, target


def log(pipeline: Pipeline, *messages: str) -> None:
    """What emit() does with each record once it is an event."""
    for message in messages:
        item, cost = event(message)
        ledger = pipeline.ledger
        if not ledger.admit(item, cost):
            pipeline.admit_slow(item, cost)
        elif ledger.gate.attention:
            pipeline.wake_sender()


def received(pipeline: Pipeline) -> int:
    stats = pipeline.ledger.snapshot()
    return stats.delivered + stats.dropped_total + stats.queued


def flush(pipeline: Pipeline, timeout: float = 5.0) -> bool:
    return pipeline.wait_flushed(pipeline.request_flush(), time.monotonic() + timeout)


@pytest.fixture(autouse=True)
def _no_waiting_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("watchtower_refresh._delivery.deliver.BACKOFF_BASE", 0.001)
    yield
    while _BUILT:  # no sender thread outlives its test
        pipeline = _BUILT.pop()
        pipeline.close_by(time.monotonic() + 1)
        if pipeline.sender is not None:
            pipeline.sender.join(5)


def test_the_first_record_opens_and_close_delivers_the_rest() -> None:
    pipeline, service, _ = build()
    states = [pipeline.state]
    log(pipeline, "one", "two", "three")
    states.append(pipeline.state)
    assert states == [State.NEW, State.OPEN]
    assert pipeline.close_by(time.monotonic() + 5)
    assert pipeline.state is State.CLOSED
    assert service.accepted == ["one", "two", "three"]
    assert pipeline.ledger.snapshot().delivered == 3


def test_a_record_after_close_reopens_with_a_new_generation() -> None:
    pipeline, service, _ = build()
    log(pipeline, "before")
    pipeline.close_by(time.monotonic() + 5)
    first = pipeline.sender
    log(pipeline, "after")
    assert pipeline.state is State.OPEN
    assert pipeline.sender is not first
    assert flush(pipeline)
    assert service.accepted == ["before", "after"]


def test_a_fenced_generation_takes_nothing() -> None:
    pipeline, _, _ = build(send_interval=60)
    ledger = pipeline.ledger
    old = ledger.new_generation()
    ledger.new_generation()
    item, cost = event("for the new generation")
    ledger.queue.append(item)
    ledger.admitted += 1
    ledger.admitted_bytes += cost
    assert ledger.take(generation=old) is None
    taken = ledger.take(generation=ledger.generation)
    assert taken is not None
    assert [e[2] for e in taken[1]] == ["for the new generation"]


def test_throttled_then_accepted_is_delivered_once_and_counted_retried() -> None:
    pipeline, service, _ = build()
    service.script = [error("ThrottlingException"), error("ThrottlingException")]
    log(pipeline, "patient")
    assert flush(pipeline)
    stats = pipeline.ledger.snapshot()
    assert (stats.delivered, stats.retried, stats.dropped) == (1, 2, {})
    assert service.accepted == ["patient"]


def test_a_batch_refused_a_thousand_times_is_still_delivered_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,100 unavailable answers are about three hours of real backoff; with no pause between
    # them the backoff arithmetic is what is tested: it used to overflow at attempt 1,024.
    # (Throttled answers wait for the process's pace instead: tests/test_pace.py.)
    monkeypatch.setattr("watchtower_refresh._delivery.deliver.BACKOFF_CAP", 0.0)
    pipeline, service, _ = build(queue_max_events=10)
    service.script = [error("ServiceUnavailableException")] * 1100
    log(pipeline, "patient")
    assert flush(pipeline, timeout=60)
    stats = pipeline.ledger.snapshot()
    assert (stats.delivered, stats.dropped, stats.queued) == (1, {}, 0)
    assert stats.retried >= 1100
    assert service.accepted == ["patient"]


def test_a_refusal_drops_the_batch_under_the_error_code() -> None:
    pipeline, service, _ = build()
    service.script = [error("AccessDeniedException")]
    with pytest.warns(Warning, match="AccessDenied"):
        log(pipeline, "denied 1", "denied 2")
        assert flush(pipeline)
    stats = pipeline.ledger.snapshot()
    assert stats.dropped == {"AccessDeniedException": 2}
    assert received(pipeline) == 2


def test_close_counts_what_it_cannot_deliver_as_shutdown(capsys: Any) -> None:
    pipeline, service, _ = build()
    release = threading.Event()

    def hang(stream: str, batch: Sequence[Event]) -> Any:
        release.wait(10)
        return {}

    service.script = [hang]
    log(pipeline, "stuck")
    pipeline.close_by(time.monotonic() + 0.2)
    stats = pipeline.ledger.snapshot()
    assert stats.dropped == {"shutdown": 1}
    assert (stats.queued, received(pipeline)) == (0, 1)
    assert "1 record for log group /stub/group could not be delivered" in capsys.readouterr().err
    release.set()  # answered after all: the record moves from shutdown to delivered
    deadline = time.monotonic() + 5
    while pipeline.ledger.snapshot().delivered != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = pipeline.ledger.snapshot()
    assert (stats.delivered, stats.dropped, received(pipeline)) == (1, {}, 1)


def test_a_queue_past_its_caps_refuses_and_counts() -> None:
    pipeline, service, _ = build(queue_max_events=3, send_interval=60)
    release = threading.Event()

    def hang(stream: str, batch: Sequence[Event]) -> Any:
        release.wait(10)  # nothing held is settled meanwhile: the caps stay reached
        service.accepted.extend(event[2] for event in batch)
        return {}

    service.script = [hang] * 10
    with pytest.warns(Warning, match="queue of log group /stub/group is full"):
        log(pipeline, *(f"r{n}" for n in range(10)))
        pipeline.issue_warnings()
    stats = pipeline.ledger.snapshot()
    assert stats.dropped == {DropReason.QUEUE_FULL.value: 7}
    assert stats.queued == 3
    release.set()
    assert flush(pipeline)
    assert sorted(service.accepted) == ["r0", "r1", "r2"]
    assert received(pipeline) == 10


def test_a_synchronous_handler_sends_from_the_caller_within_its_deadline() -> None:
    pipeline, service, target = build(use_queues=False, flush_timeout=0.3)
    service.script = [error("ThrottlingException")] * 10_000
    started = time.monotonic()
    with pytest.warns(Warning, match="gave up resending"):
        log(pipeline, "sync")
    assert time.monotonic() - started < 2.0  # a hang guard: the bound is 0.3 s
    assert pipeline.sender is None
    assert pipeline.ledger.snapshot().dropped == {"timeout": 1}
    given = [w for w in target.within if w is not None]
    assert given
    assert all(w <= 0.3 for w in given)
    assert given == sorted(given, reverse=True)  # each attempt gets what is left


def test_every_resend_gets_what_is_left_of_the_deadline() -> None:
    target = StubTarget()
    calls = 0

    def put(client: Any, stream: str, batch: Sequence[Event]) -> Any:
        nonlocal calls
        calls += 1
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    deadline = time.monotonic() + 0.5
    result = deliver_batch(
        target,
        put,
        group="g",
        stream="s",
        batch=[event("x")[0]],
        can_create=True,
        count=lambda name: None,
        deadline=lambda: deadline,
        stop=threading.Event(),
        closing=lambda: False,
    )
    assert result.reason == "timeout"
    assert calls >= 2
    first, *resends = target.within
    assert first is None  # the first try keeps the shared client and its own timeouts
    assert resends
    assert all(w is not None and 0 < w <= 0.5 for w in resends)
