"""Delivering one batch to one stream: put, and on failure refresh, create, back off or give up.

No thread, no queue and no counter of its own: ``deliver_batch`` returns what became of the
batch and the caller settles it in the ledger. What to do about each failure is decided by
its error code (``_failures``); this module only runs the loop, with a deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .._aws import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    MAX_QUICK_RETRIES,
    Outcome,
    advice,
    classify,
    error_code,
)
from .._core.events import Event, RejectedCounts, count_rejected

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["Delivered", "Put", "Target", "backoff_delay", "deliver_batch"]

_MAX_DOUBLINGS = 32  # 2**32 * BACKOFF_BASE is far past BACKOFF_CAP: no float overflow ever


class Target(Protocol):
    """Where a batch goes: the client, the set-up of the group and stream, and the options."""

    refreshable: bool

    def client(self, within: float | None = None) -> CloudWatchLogsClient: ...
    def prepare(self, client: CloudWatchLogsClient, stream: str) -> None: ...
    def discard_client(self) -> None: ...
    def forget(self, stream: str) -> None: ...


Put = Callable[["CloudWatchLogsClient", str, Sequence[Event]], Any]
"""Sends one batch to a stream and returns the PutLogEvents response (or None)."""


class Delivered(NamedTuple):
    """What became of one batch."""

    delivered: int
    """Events the service accepted."""
    rejected: RejectedCounts
    """Events the service refused one by one."""
    reason: str | None
    """Why the rest was dropped (an error code, ``timeout``, ``shutdown``), or None."""
    warning: str | None
    """What to tell people about the drop."""


_NONE_REJECTED = RejectedCounts(0, 0, 0)


def backoff_delay(attempt: int) -> float:
    """A full-jitter delay in seconds before resend number ``attempt`` (from 0)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, _MAX_DOUBLINGS))
    return random.uniform(0.0, ceiling)


def deliver_batch(
    target: Target,
    put: Put,
    *,
    group: str,
    stream: str,
    batch: Sequence[Event],
    can_create: bool,
    count: Callable[[str], None],
    deadline: Callable[[], float | None],
    stop: threading.Event,
    closing: Callable[[], bool],
) -> Delivered:
    """Deliver ``batch`` to ``stream``, resending as the failure calls for, until ``deadline``.

    Args:
        target: The client and set-up of the group and streams.
        put: Sends the batch; raises botocore's exceptions.
        group: Log group name, for warnings.
        stream: Log stream name.
        batch: Events sorted by time, within the service's limits.
        can_create: Whether a missing group or stream may be created.
        count: Counts ``retried`` and ``credential_refreshes``.
        deadline: The monotonic time by which to give up, or None for no limit; asked again
            before each attempt and each wait, since ``close()`` may set one meanwhile. Each
            resend gets what is left of it, never more.
        stop: Set to cut a backoff wait short.
        closing: Whether the handler is closing: a drop is then ``shutdown``, not ``timeout``.
    """
    attempt = quick = 0
    why = ""
    while True:
        within = None
        limit = deadline()
        if limit is not None and (attempt or quick):
            # A resend gets what is left, never more; a first try keeps the client's own
            # timeouts (sized from flush_timeout), so healthy puts share one client.
            within = limit - time.monotonic()
            if within <= 0:
                reason = "shutdown" if closing() else "timeout"
                return Delivered(0, _NONE_REJECTED, reason, f"gave up resending: {why}")
        try:
            client = target.client(within)
            target.prepare(client, stream)
            response = put(client, stream, batch)
        except Exception as exc:
            why = advice(exc, group, stream)
            outcome = classify(exc)
            if outcome is Outcome.REFRESH and not target.refreshable:
                outcome = Outcome.GIVE_UP
            if outcome is Outcome.CREATE and (quick >= MAX_QUICK_RETRIES or not can_create):
                outcome = Outcome.GIVE_UP
            if outcome is Outcome.GIVE_UP:
                reason = error_code(exc) or type(exc).__name__
                return Delivered(0, _NONE_REJECTED, reason, why)
            if outcome is Outcome.REFRESH:
                target.discard_client()
                count("credential_refreshes")
            else:
                count("retried")
            if outcome is Outcome.CREATE:
                target.forget(stream)
            if outcome is not Outcome.BACKOFF and quick < MAX_QUICK_RETRIES:
                quick += 1
                continue
            if not _wait(attempt, deadline(), stop):
                reason = "shutdown" if closing() else "timeout"
                return Delivered(0, _NONE_REJECTED, reason, f"gave up resending: {why}")
            attempt += 1
            continue
        info = response.get("rejectedLogEventsInfo") if isinstance(response, dict) else None
        rejected = count_rejected(info, len(batch))
        return Delivered(len(batch) - rejected.total, rejected, None, None)


def _wait(attempt: int, deadline: float | None, stop: threading.Event) -> bool:
    """Sleep with full jitter; False when the deadline leaves no time or ``stop`` is set."""
    delay = backoff_delay(attempt)
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        delay = min(delay, remaining)
    if stop.is_set():
        return False
    return not stop.wait(delay)
