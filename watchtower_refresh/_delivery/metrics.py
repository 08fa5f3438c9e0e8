"""Self-metrics: what a handler did with its records, written to its log group as EMF.

With ``metrics_interval``, the scheduler (``scheduler.Sender``) hands a worker one job every
interval, and one more when ``close()`` has settled everything: ``SelfMetrics.send`` writes
one CloudWatch Embedded Metric Format event to the handler's log group, on a stream of this
process's own (``stream_name``), and CloudWatch Logs turns it into metrics: no other API
call and no other permission than the handler's PutLogEvents and CreateLogStream.

Each event carries what happened since the last event the service accepted: the counters
are the difference between a ``stats`` snapshot taken now and the snapshot of that event.
A put that fails changes nothing, so the next event carries its counts; the counters of the
accepted events therefore add up to the last accepted snapshot, which at ``close()`` is
``stats`` itself. Only one event is in flight at a time (``_sending``), so two can never
carry the same counts. A put the service stored but whose answer was lost (a read timeout)
is counted again by the next event: EMF is at-least-once.

These events are not records: they never enter the ledger, the spool or ``stats``, and
their own puts' retries are not counted (a retry after the snapshot would be in ``stats``
at close and in no event).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from .._core.ledger import DeliveryStats, Ledger
from .._process import summarizing
from .._report import Reporter
from .deliver import Put, Target, deliver_batch

if TYPE_CHECKING:
    from .._core.events import Event
    from .pace import Pace

__all__ = ["MAX_REASONS", "STREAM_PREFIX", "SelfMetrics", "document", "stream_name"]

STREAM_PREFIX = "watchtower-refresh-metrics"
"""First part of every metrics stream's name: ``describe-log-streams --log-stream-name-prefix``
finds them all, and a reader of the group tells them from records' streams."""
_MAX_METRICS = 100  # MetricDefinitions one EMF directive may hold
_FIXED = ("Delivered", "Dropped", "Retried", "CredentialRefreshes", "QueueDepth", "OldestQueuedAge")
MAX_REASONS = _MAX_METRICS - len(_FIXED) - 1
"""Drop reasons given a metric of their own in one event; the rest go to ``Dropped_other``."""
_SECONDS = frozenset(("OldestQueuedAge",))


class Settings(Protocol):
    """The options self-metrics read."""

    @property
    def log_group_name(self) -> str: ...
    @property
    def create_log_group(self) -> bool: ...
    @property
    def create_log_stream(self) -> bool: ...
    @property
    def metrics_interval(self) -> float | None: ...
    @property
    def metrics_namespace(self) -> str: ...


def stream_name(machine: str | None = None, pid: int | None = None) -> str:
    """The metrics stream of this process: ``watchtower-refresh-metrics/<host>/<pid>``.

    One per process, so that many processes logging to one group never share one (each
    stream is one process's series, in order, and a forked child gets its own), and none
    is ever a records' stream, whatever ``log_stream_name`` is.
    """
    host = platform.node() if machine is None else machine
    name = f"{STREAM_PREFIX}/{host or 'localhost'}/{os.getpid() if pid is None else pid}"
    return name.replace(":", "-").replace("*", "-")[:512]


def _reason_metric(reason: str) -> str:
    """The metric of records dropped for ``reason``: ``Dropped_queue_full``."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in reason)
    return f"Dropped_{safe[:200] or '_'}"


def document(
    *,
    group: str,
    namespace: str,
    now_ms: int,
    stats: DeliveryStats,
    since: DeliveryStats,
    oldest_ms: int | None,
    final: bool,
) -> dict[str, object]:
    """One EMF document: the counters from ``since`` to ``stats``, and the queue now.

    Args:
        group: The log group, the metrics' one dimension (``LogGroup``).
        namespace: The CloudWatch namespace.
        now_ms: The event's time, milliseconds since the epoch (``_aws.Timestamp``).
        stats: What the handler has done so far.
        since: What the last accepted event had counted up to.
        oldest_ms: Timestamp of the record held longest, or None.
        final: Whether ``close()`` asked for it.

    Returns:
        The document, ready for ``json.dumps``: counts are whole records or puts (``Count``),
        a difference that may be negative (a put answered after ``close()`` gave up on it
        moves its records from ``Dropped_shutdown`` to what became of them); the queue is
        the number held now and ``OldestQueuedAge`` its oldest record's age (``Seconds``).
    """
    values: dict[str, float] = {
        "Delivered": stats.delivered - since.delivered,
        "Dropped": stats.dropped_total - since.dropped_total,
        "Retried": stats.retried - since.retried,
        "CredentialRefreshes": stats.credential_refreshes - since.credential_refreshes,
        "QueueDepth": stats.queued,
        "OldestQueuedAge": 0.0 if oldest_ms is None else max(0, now_ms - oldest_ms) / 1000,
    }
    reasons = _reason_deltas(stats.dropped, since.dropped)
    for reason, delta in reasons[:MAX_REASONS]:
        name = _reason_metric(reason)
        values[name] = values.get(name, 0) + delta
    rest = sum(delta for _, delta in reasons[MAX_REASONS:])
    if rest:
        values["Dropped_other"] = values.get("Dropped_other", 0) + rest
    metrics = [
        {"Name": name, "Unit": "Seconds" if name in _SECONDS else "Count"} for name in values
    ]
    return {
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [["LogGroup"]], "Metrics": metrics}
            ],
        },
        "LogGroup": group,
        **values,
        "Final": final,
        "ProcessId": os.getpid(),
    }


def _reason_deltas(now: Mapping[str, int], before: Mapping[str, int]) -> list[tuple[str, int]]:
    """Reasons whose count changed, the largest changes first (ties by name)."""
    changed = [(reason, now.get(reason, 0) - before.get(reason, 0)) for reason in {*now, *before}]
    return sorted(((r, d) for r, d in changed if d), key=lambda item: (-abs(item[1]), item[0]))


def _not_counted(_: str) -> None:
    """The metrics puts' own retries and refreshes stay out of ``stats``."""


class SelfMetrics:
    """The self-metrics of one handler in one process.

    Args:
        settings: The handler's options (``metrics_interval`` set).
        ledger: Where ``stats`` and the age of the oldest record are read.
        target: The client and the set-up of the group and streams.
        put: Sends one batch (the handler's).
        reporter: Gives the warnings.
        closing_deadline: When ``close()`` gives up, or None while the handler is open.
        pace: The process's pace of puts, or None: not paced.
    """

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        target: Target,
        put: Put,
        reporter: Reporter,
        closing_deadline: Callable[[], float | None],
        pace: Pace | None = None,
    ) -> None:
        interval = settings.metrics_interval
        if interval is None:
            message = "SelfMetrics needs metrics_interval"
            raise ValueError(message)
        self.interval = interval
        """Seconds between two periodic events."""
        self.stream = stream_name()
        """The stream the events go to."""
        self._settings = settings
        self._ledger = ledger
        self._target = target
        self._put = put
        self._reporter = reporter
        self._closing_deadline = closing_deadline
        self._pace = pace
        # A leaf lock: nothing else is taken while it is held.
        self._lock = threading.Lock()
        self._reported = DeliveryStats()  # the snapshot of the last accepted event
        self._sending = False
        self._due: float | None = None

    def due(self, now: float) -> tuple[bool, float]:
        """Whether a periodic event is due at the monotonic time ``now``, and the seconds
        until the next one. The first is due one interval after the first call."""
        with self._lock:
            if self._due is None:
                self._due = now + self.interval
            if now < self._due:
                return False, self._due - now
            self._due += self.interval
            if self._due <= now:  # the scheduler was held up: no burst to catch up
                self._due = now + self.interval
            return True, self._due - now

    def send(self, stop: threading.Event, *, final: bool = False) -> bool:
        """Write one event with what happened since the last accepted one; a worker calls it.

        Args:
            stop: Set to cut a backoff wait short (``close()`` is out of time).
            final: Whether ``close()`` asked for it, once everything was settled.

        Returns:
            Whether the service accepted it. If not, its counts go into the next event.
        """
        with self._lock:
            if self._sending:
                return False  # an older sender generation's event is still out
            self._sending = True
            since = self._reported
        accepted = False
        stats = since
        try:
            ledger = self._ledger
            stats = ledger.snapshot()
            accepted = self._write(stats, since, ledger.oldest_timestamp(), stop, final=final)
        except Exception as exc:  # never into the sender; the counts wait for the next event
            self._reporter.once(
                "metrics-internal-error",
                f"internal error while writing self-metrics for log group "
                f"{self._settings.log_group_name}: {exc!r}; their counts go into the next event",
            )
        finally:
            with self._lock:
                if accepted:
                    self._reported = stats
                self._sending = False
        return accepted

    def _write(
        self,
        stats: DeliveryStats,
        since: DeliveryStats,
        oldest_ms: int | None,
        stop: threading.Event,
        *,
        final: bool,
    ) -> bool:
        settings = self._settings
        now_ms = int(time.time() * 1000)
        body = document(
            group=settings.log_group_name,
            namespace=settings.metrics_namespace,
            now_ms=now_ms,
            stats=stats,
            since=since,
            oldest_ms=oldest_ms,
            final=final,
        )
        message = json.dumps(body, separators=(",", ":"))  # ASCII: its length is its size
        event: Event = (self.stream, now_ms, message, len(message))
        started = time.monotonic()

        def deadline() -> float:
            # Within the interval (the next event carries the counts), or close()'s.
            closing = self._closing_deadline()
            return started + self.interval if closing is None else closing

        result = deliver_batch(
            self._target,
            self._put,
            group=settings.log_group_name,
            stream=self.stream,
            batch=[event],
            can_create=settings.create_log_group or settings.create_log_stream,
            count=_not_counted,
            deadline=deadline,
            stop=stop,
            closing=lambda: self._closing_deadline() is not None,
            pace=self._pace,
        )
        if result.reason is None and result.delivered == 1:
            return True
        if not summarizing():
            self._reporter.once(
                f"metrics:{result.reason}",
                f"a self-metrics event for log group {settings.log_group_name} was not "
                f"written to stream {self.stream}: {result.warning or result.reason}; its "
                "counts go into the next event (said once per process for each reason)",
            )
        return False
