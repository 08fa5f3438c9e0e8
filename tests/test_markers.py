"""Drop markers: what each stream lost, the marker's text, JSON and timestamp."""

from __future__ import annotations

import datetime
import json

from watchtower_refresh._core.events import Event
from watchtower_refresh._core.markers import Gap, Gaps, Style, render, stamp

PREFIX = "watchtower-refresh:"


# --------------------------------------------------------------------------- the event itself


def test_a_marker_is_stamped_where_the_service_accepts_it() -> None:
    now = 1_800_000_000_000
    gap = Gap(now - 5000, now - 1000)
    assert stamp(gap, now) == now - 1000  # where the hole ends
    ahead = Gap(now, now + 3 * 3600 * 1000)  # records refused as too new
    assert stamp(ahead, now) == now
    old = Gap(now - 20 * 86_400_000, now - 15 * 86_400_000)  # older than 14 days
    assert now - 14 * 86_400_000 < stamp(old, now) < now
    assert now - 86_400_000 < stamp(Gap(now - 3 * 86_400_000, now - 2 * 86_400_000), now, 1)


def test_the_text_names_the_date_of_times_on_another_day() -> None:
    day = 86_400_000
    now = 1_800_000_000_000 - 1_800_000_000_000 % day + 3_600_000  # 01:00 UTC
    gap = Gap(now - 2 * 3_600_000, now - 1000)
    gap.reasons.update({"queue_full": 3, "InvalidParameterException": 4})
    text = render(gap, now - 1000)
    yesterday = datetime.datetime.fromtimestamp((now - day) / 1000, datetime.timezone.utc)
    assert text == (
        f"{PREFIX} 7 records dropped between {yesterday:%Y-%m-%d} 23:00:00.000 and "
        "00:59:59.000 UTC (InvalidParameterException 4, queue_full 3)"
    )


def test_refusals_by_time_are_placed_by_their_index_in_the_batch() -> None:
    gaps = Gaps()
    batch: list[Event] = [("s", ms, f"m{ms}", 3) for ms in range(100, 110)]
    # As count_rejected reads rejectedLogEventsInfo: expired first, then too old; too new last.
    gaps.settled(
        batch, delivered=5, rejected={"expired": 1, "too_old": 2, "too_new": 2}, reason=None, rest=0
    )
    gap = gaps.take("s")
    assert gap is not None
    assert (gap.first_ms, gap.last_ms, dict(gap.reasons)) == (
        100,
        109,
        {"expired": 1, "too_old": 2, "too_new": 2},
    )
    assert gaps.take("s") is None  # taken: the next loss opens a new episode
    kept = Gap(1, 2)
    kept.reasons["queue_full"] = 1
    gaps.add("s", 5, 5, "timeout", 1)  # lost while the marker's put was failing
    gaps.give_back("s", kept)
    again = gaps.take("s")
    assert again is not None
    assert (again.first_ms, again.last_ms, again.count) == (1, 5, 2)


def test_records_kept_in_a_spool_or_given_up_on_purpose_open_no_episode() -> None:
    gaps = Gaps()
    spooled: Event = ("s", 1, "on disk", 7, 42)
    memory: Event = ("s", 2, "memory", 6)
    gaps.add_events([spooled, memory], "AccessDeniedException")  # fixable: the spool keeps it
    gaps.add_events([spooled], "shutdown")
    gaps.add_events([memory], "empty")
    gap = gaps.take("s")
    assert gap is not None
    assert (gap.first_ms, gap.last_ms, dict(gap.reasons)) == (2, 2, {"AccessDeniedException": 1})
    assert "s" not in gaps


def test_the_json_timestamp_follows_the_formatters_datefmt() -> None:
    gap = Gap(1_800_000_000_000, 1_800_000_000_000)
    gap.reasons["queue_full"] = 1
    utc = datetime.timezone.utc
    fields = json.loads(render(gap, 1_800_000_000_000, Style(True, utc, "%Y-%m-%d %H:%M:%S")))
    assert fields["timestamp"] == "2027-01-15 08:00:00"
    assert fields["first_dropped"] == fields["last_dropped"] == "2027-01-15T08:00:00.000+00:00"
    assert fields["message"] == f"{PREFIX} 1 record dropped at 08:00:00.000 UTC (queue_full 1)"
