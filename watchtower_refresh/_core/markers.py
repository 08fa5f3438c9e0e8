"""Drop markers: what each stream lost, kept until a put to that stream succeeds again.

A record lost on its way to a stream leaves a hole that nobody reading the stream can see.
``Gaps`` keeps, per stream, the current episode of loss (``Gap``: how many records, between
which of their timestamps, and why); the delivery side takes it once a put to that stream
succeeds, writes one event that says so (``render``), and gives it back if that put fails,
so a marker is neither lost nor written twice for the same records. Markers are not records:
no counter of ``stats`` counts them.

Not every record given up is a hole (``marked``): the deliberate reasons
(``reasons.DELIBERATE``: an empty message) are the application's choice; a record kept in
the spool for a later process (``reasons.keeps_spooled``) arrives late, not never; and what
is still held at shutdown (``shutdown``) is lost with a process that can no longer put
anything, or, with a spool, delivered by the process that replays it.

``Gaps`` has no lock of its own: the ledger's guards it.
"""

from __future__ import annotations

import collections
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .events import MAX_AGE_MS, SPOOL_ID, TIMESTAMP, Event
from .reasons import DELIBERATE, DropReason, keeps_spooled

__all__ = [
    "MARKER_LOGGER",
    "MARKER_PREFIX",
    "PLAIN",
    "Gap",
    "Gaps",
    "Style",
    "marked",
    "render",
    "stamp",
]

MARKER_PREFIX = "watchtower-refresh:"
"""How a marker's text begins: a filter pattern that finds every one."""
MARKER_LOGGER = "watchtower_refresh"
"""The ``logger`` of a marker in JSON form."""
_SAFE_AGE_MS = MAX_AGE_MS - 3600 * 1000  # an hour inside the service's 14 days
_UNMARKED = frozenset((*DELIBERATE, DropReason.SHUTDOWN.value))


def marked(reason: str, *, spooled: bool) -> bool:
    """Whether a record given up for ``reason`` leaves a hole a marker should report.

    Args:
        reason: The key it is counted under in ``stats.dropped``.
        spooled: Whether it has a copy in this process's spool (or the one it was adopted
            from), which stays there for a later process when ``keeps_spooled(reason)``.
    """
    return reason not in _UNMARKED and not (spooled and keeps_spooled(reason))


class Gap:
    """One episode of loss in one stream: records, their time range, counts by reason.

    Attributes:
        first_ms: Timestamp of the earliest record lost, milliseconds since the epoch.
        last_ms: Timestamp of the latest record lost, milliseconds since the epoch.
        reasons: Records lost, by the reason ``stats.dropped`` counts them under.
    """

    __slots__ = ("first_ms", "last_ms", "reasons")

    def __init__(self, first_ms: int, last_ms: int) -> None:
        self.first_ms = first_ms
        self.last_ms = last_ms
        self.reasons: collections.Counter[str] = collections.Counter()

    @property
    def count(self) -> int:
        """Records lost in this episode."""
        return sum(self.reasons.values())

    def merge(self, other: Gap) -> None:
        """Add ``other``'s records to this episode."""
        self.first_ms = min(self.first_ms, other.first_ms)
        self.last_ms = max(self.last_ms, other.last_ms)
        self.reasons.update(other.reasons)


class Gaps:
    """The open episode of loss of every stream that has one (the ledger's lock held)."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[str, Gap] = {}

    def __contains__(self, stream: object) -> bool:
        """Whether ``stream`` has lost records not yet marked (safe without the lock)."""
        return stream in self._open

    def add(self, stream: str, first_ms: int, last_ms: int, reason: str, count: int) -> None:
        """Count ``count`` records of ``stream``, timestamped within ``first_ms..last_ms``,
        lost for ``reason``."""
        if count <= 0:
            return
        gap = self._open.get(stream)
        if gap is None:
            gap = self._open[stream] = Gap(first_ms, last_ms)
        else:
            gap.first_ms = min(gap.first_ms, first_ms)
            gap.last_ms = max(gap.last_ms, last_ms)
        gap.reasons[reason] += count

    def refused(self, stream: str, timestamp: int, reason: str, count: int) -> None:
        """Count ``count`` records of ``stream`` (of ``timestamp``, in milliseconds) refused
        on arrival for ``reason``, if that leaves a hole (``marked``)."""
        if marked(reason, spooled=False):
            self.add(stream, timestamp, timestamp, reason, count)

    def add_events(self, events: Sequence[Event], reason: str, count: int | None = None) -> None:
        """Count ``events`` (at most ``count`` of them) lost for ``reason``, if that leaves a
        hole: events kept in the spool for a later process are left out."""
        if not events or reason in _UNMARKED:
            return
        if keeps_spooled(reason):
            events = [event for event in events if len(event) <= SPOOL_ID]
        by_stream: dict[str, list[int]] = {}
        for event in events:
            by_stream.setdefault(event[0], []).append(event[TIMESTAMP])
        left = len(events) if count is None else min(count, len(events))
        for stream, times in by_stream.items():
            n = min(len(times), left)
            self.add(stream, min(times), max(times), reason, n)
            left -= n

    def settled(
        self,
        events: Sequence[Event],
        *,
        delivered: int,
        rejected: Mapping[str, int],
        reason: str | None,
        rest: int,
    ) -> None:
        """Count what a settlement of one batch (``events``, sorted by time) gave up.

        The service's refusals by time (``too_old``, ``expired``: the earliest events;
        ``too_new``: the latest, as ``count_rejected`` reads its indexes) are placed by
        their index; ``rest`` records dropped as ``reason`` by the batch's whole range.
        """
        expired, too_old = rejected.get("expired", 0), rejected.get("too_old", 0)
        for why, n in rejected.items():
            if not n:
                continue
            if why == DropReason.TOO_NEW.value:
                chosen = events[len(events) - n :]
            elif why == DropReason.TOO_OLD.value:
                chosen = events[expired : expired + too_old]
            else:
                chosen = events[:n]
            self.add_events(chosen, why)
        if rest and reason is not None:
            self.add_events(events[delivered:] or events, reason, rest)

    def streams(self) -> list[str]:
        """The streams that lost records not yet marked."""
        return list(self._open)

    def take(self, stream: str) -> Gap | None:
        """The episode of ``stream``, now being marked: later losses open a new one."""
        return self._open.pop(stream, None)

    def give_back(self, stream: str, gap: Gap) -> None:
        """A marker that could not be written: its episode is open again, with any loss
        counted meanwhile."""
        later = self._open.get(stream)
        if later is not None:
            gap.merge(later)
        self._open[stream] = gap


class Style(NamedTuple):
    """How the handler's formatter writes records, so that a marker reads like them."""

    as_json: bool
    """One JSON object per event (``LocalTimeFormatter(as_json=True)``)."""
    zone: datetime.tzinfo | None
    """The zone of the times shown; None: the process's local zone."""
    datefmt: str | None = None
    """The formatter's ``strftime`` format of a JSON record's ``timestamp``; None: ISO 8601."""


PLAIN = Style(as_json=False, zone=datetime.timezone.utc)


def stamp(gap: Gap, now_ms: int, retention_days: int | None = None) -> int:
    """The marker's timestamp, in milliseconds: the last lost record's, where the hole is,
    moved into what the service accepts (never ahead of ``now_ms``, never older than 14
    days or the group's ``retention_days``, with an hour to spare)."""
    oldest = now_ms - _SAFE_AGE_MS
    if retention_days is not None:
        oldest = max(oldest, now_ms - retention_days * 86_400_000 + 3_600_000)
    return max(min(gap.last_ms, now_ms), min(oldest, now_ms))


def render(gap: Gap, when_ms: int, style: Style = PLAIN) -> str:
    """The marker's message: text, or a JSON object with the same fields.

    Text: ``watchtower-refresh: 501 records dropped between 10:42:07.120 and
    10:42:08.004 UTC (queue_full 501)``; a time not on the marker's own day carries its
    date. JSON: ``timestamp``, ``level`` and ``logger`` as ``LocalTimeFormatter`` writes
    them, ``message`` (the text), ``dropped`` (records), ``first_dropped`` and
    ``last_dropped`` (ISO 8601 with milliseconds and the offset) and ``dropped_by_reason``.
    """
    zone = style.zone
    when = _moment(when_ms, zone)
    first, last = _moment(gap.first_ms, zone), _moment(gap.last_ms, zone)
    count = gap.count
    reasons = sorted(gap.reasons.items(), key=lambda item: (-item[1], item[0]))
    why = ", ".join(f"{reason} {n}" for reason, n in reasons)
    suffix = _zone_name(when)
    if first == last:
        span = f"at {_clock(first, when)} {suffix}"
    else:
        span = f"between {_clock(first, when)} and {_clock(last, when)} {suffix}"
    noun = "record" if count == 1 else "records"
    text = f"{MARKER_PREFIX} {count} {noun} dropped {span} ({why})"
    if not style.as_json:
        return text
    return json.dumps(
        {
            "timestamp": when.strftime(style.datefmt)
            if style.datefmt
            else when.isoformat(timespec="milliseconds"),
            "level": "WARNING",
            "logger": MARKER_LOGGER,
            "message": text,
            "dropped": count,
            "first_dropped": first.isoformat(timespec="milliseconds"),
            "last_dropped": last.isoformat(timespec="milliseconds"),
            "dropped_by_reason": dict(reasons),
        },
        ensure_ascii=False,
    )


def _moment(ms: int, zone: datetime.tzinfo | None) -> datetime.datetime:
    moment = datetime.datetime.fromtimestamp(ms / 1000, zone or datetime.timezone.utc)
    return moment.astimezone() if zone is None else moment


def _clock(moment: datetime.datetime, day_of: datetime.datetime) -> str:
    clock = f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"
    return clock if moment.date() == day_of.date() else f"{moment:%Y-%m-%d} {clock}"


def _zone_name(moment: datetime.datetime) -> str:
    offset = moment.utcoffset()
    if not offset:
        return "UTC"
    return moment.isoformat()[-6:]  # +09:00
