"""Delivering one batch to one stream: put, and on failure refresh, create, back off or give up.

No thread, no queue and no counter of its own: ``deliver_batch`` returns what became of the
batch and the caller settles it in the ledger. What to do about each failure is decided by
its error code (``_failures``); this module only runs the loop, with a deadline. With a
``pace`` (the process's, ``pace.PACE``), every put waits for its slot first and tells the
pace what the service answered; a throttled put is resent in its next slot, not after a
backoff of its own.
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
    is_throttling,
)
from .._core.events import Event, RejectedCounts, count_rejected

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

    from .pace import Pace

__all__ = ["Delivered", "Put", "Target", "backoff_delay", "deliver_batch"]

_MAX_DOUBLINGS = 32  # 2**32 * BACKOFF_BASE is far past BACKOFF_CAP: no float overflow ever
PUT_ROOM = 1.0
"""Seconds before its deadline by which a batch's first put goes, whatever the pace says:
at close(), what has not been sent by then would be lost, so it is sent (what fits)."""


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
    pace: Pace | None = None,
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
        pace: The process's pace of puts, or None: not paced.
    """
    attempt = quick = 0
    why = ""
    while True:
        slot = _before_put(pace, deadline, stop, resend=bool(attempt or quick))
        if slot is None:
            return _gave_up(why, closing)
        turn, within = slot
        try:
            response = _put_once(target, put, stream, batch, within)
        except Exception as exc:
            why = advice(exc, group, stream)
            paced = _throttled(pace, turn, exc)
            outcome = _resend_as(exc, target, stream, count, can_create=can_create, quick=quick)
            if outcome is Outcome.GIVE_UP:
                return Delivered(0, _NONE_REJECTED, error_code(exc) or type(exc).__name__, why)
            if outcome is not Outcome.BACKOFF and quick < MAX_QUICK_RETRIES:
                quick += 1
                continue
            # Throttled: the resend waits for its slot in the pace, which the answer has
            # just made slower for every handler of the process.
            if not paced and not _wait(attempt, deadline(), stop):
                return _gave_up(why, closing)
            attempt += 1
            continue
        if pace is not None:
            pace.accepted(turn)
        return _accepted(response, len(batch))


def _before_put(
    pace: Pace | None,
    deadline: Callable[[], float | None],
    stop: threading.Event,
    *,
    resend: bool,
) -> tuple[int, float | None] | None:
    """Wait for the pace's slot, then measure what the put may take of the deadline.

    Returns the pace's turn (0 when not paced) and the seconds the put may take (None: the
    client's own timeouts), or None when no time is left for it.
    """
    turn = 0
    if pace is not None:
        turn, wait = pace.reserve()
        if wait > 0 and not _wait_turn(wait, deadline(), stop, first=not resend):
            return None
    limit = deadline()
    # A resend gets what is left, never more; a first try keeps the client's own
    # timeouts (sized from flush_timeout), so healthy puts share one client.
    if limit is None or not resend:
        return turn, None
    within = limit - time.monotonic()
    return (turn, within) if within > 0 else None


def _put_once(
    target: Target, put: Put, stream: str, batch: Sequence[Event], within: float | None
) -> Any:
    """One attempt: the client (within ``within`` seconds), the stream's set-up, the put."""
    client = target.client(within)
    target.prepare(client, stream)
    return put(client, stream, batch)


def _resend_as(
    exc: Exception,
    target: Target,
    stream: str,
    count: Callable[[str], None],
    *,
    can_create: bool,
    quick: int,
) -> Outcome:
    """Decide how a failed put is resent, and prepare and count the resend.

    ``GIVE_UP`` when it is not: credentials that cannot refresh, or a group or stream that
    may not be created or is still missing after ``MAX_QUICK_RETRIES`` resends.
    """
    outcome = classify(exc)
    if outcome is Outcome.REFRESH and not target.refreshable:
        outcome = Outcome.GIVE_UP
    if outcome is Outcome.CREATE and (quick >= MAX_QUICK_RETRIES or not can_create):
        outcome = Outcome.GIVE_UP
    if outcome is Outcome.GIVE_UP:
        return outcome
    if outcome is Outcome.REFRESH:
        target.discard_client()
        count("credential_refreshes")
    else:
        count("retried")
    if outcome is Outcome.CREATE:
        target.forget(stream)
    return outcome


def _throttled(pace: Pace | None, turn: int, exc: Exception) -> bool:
    """Whether a paced put was throttled; if so, the pace is told, and slows the process down."""
    if pace is None or not is_throttling(exc):
        return False
    pace.throttled(turn)
    return True


def _gave_up(why: str, closing: Callable[[], bool]) -> Delivered:
    """Out of time before the batch was delivered: ``shutdown`` while closing, else ``timeout``."""
    reason = "shutdown" if closing() else "timeout"
    return Delivered(0, _NONE_REJECTED, reason, f"gave up resending: {why}")


def _accepted(response: Any, sent: int) -> Delivered:
    """The put succeeded: ``sent`` events, less those the service refused one by one."""
    info = response.get("rejectedLogEventsInfo") if isinstance(response, dict) else None
    rejected = count_rejected(info, sent)
    return Delivered(sent - rejected.total, rejected, None, None)


def _wait(attempt: int, deadline: float | None, stop: threading.Event) -> bool:
    """Sleep with full jitter; False when the deadline leaves no time or ``stop`` is set."""
    return _sleep(backoff_delay(attempt), deadline, stop)


def _wait_turn(wait: float, deadline: float | None, stop: threading.Event, *, first: bool) -> bool:
    """Wait ``wait`` seconds for the pace's slot; False to give up.

    A resend waits as a backoff does: until the deadline at most, and not once ``stop`` is
    set. A batch's first put never gives up here: it waits until ``PUT_ROOM`` before the
    deadline at most, and goes at once when ``stop`` is set (close() is out of time: it is
    sent now or lost).
    """
    if not first:
        return _sleep(wait, deadline, stop)
    if deadline is not None:
        wait = min(wait, deadline - PUT_ROOM - time.monotonic())
    if wait > 0 and not stop.is_set():
        stop.wait(wait)
    return True


def _sleep(delay: float, deadline: float | None, stop: threading.Event) -> bool:
    """Sleep ``delay`` seconds; False when the deadline leaves no time or ``stop`` is set."""
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        delay = min(delay, remaining)
    if stop.is_set():
        return False
    return not stop.wait(delay)
