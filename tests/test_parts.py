"""large_events="split": records over the event limit sent in parts, and joined back exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from watchtower_refresh import join_parts
from watchtower_refresh._core.events import EVENT_OVERHEAD
from watchtower_refresh._core.parts import MARKER_PREFIX, split_message, split_size

# --------------------------------------------------------------------------- parts


@given(
    text=st.text(min_size=1, max_size=3000),
    limit=st.integers(min_value=64, max_value=700),
)
def test_parts_fit_the_limit_and_join_back_exactly(text: str, limit: int) -> None:
    text = text.encode("utf-8", "backslashreplace").decode()  # valid UTF-8, as emit() sends
    size = len(text.encode())
    if size <= limit:
        text, size = text * (limit // size + 2), size * (limit // size + 2)
    parts = split_message(text, limit)
    assert len(parts) >= 2
    assert all(len(part.encode()) <= limit for part in parts)
    # What emit() charges is exactly what the parts cost in a batch.
    assert split_size(text, size, limit) + EVENT_OVERHEAD == sum(
        len(part.encode()) + EVENT_OVERHEAD for part in parts
    )
    assert join_parts(["before", *parts, "after"]) == ["before", text, "after"]


def test_join_leaves_incomplete_forged_and_ordinary_messages_as_they_were() -> None:
    parts = split_message("x" * 500, 100)
    assert join_parts(parts[1:]) == parts[1:]  # a part missing
    forged = [f"{MARKER_PREFIX}{'0' * 16} {n}/2] text" for n in (1, 2)]
    assert join_parts(forged) == forged  # looks like parts, but the id is not the text's
    ordinary = ["[wtr-split not a part", f"{MARKER_PREFIX}0123456789abcdef 1/1] one", ""]
    assert join_parts(ordinary) == ordinary


def test_join_keeps_one_of_each_part_sent_twice_and_each_record_logged_twice() -> None:
    first, second = split_message("a" * 500, 100), split_message("b" * 500, 100)
    again = first[:2]  # a record sent again after its process died after two parts
    assert join_parts([*first, *second, *again, *first]) == ["a" * 500, "b" * 500, "a" * 500]
    assert join_parts([*first, *again]) == ["a" * 500]
