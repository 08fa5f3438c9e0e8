"""The gate alone: which records ``emit()`` may queue on its fast path."""

from __future__ import annotations

from watchtower_refresh._core.gate import CLOSED_LIMIT, Gate


def test_the_record_that_should_wake_the_sender_takes_the_slow_path() -> None:
    gate = Gate(100, 10_000)
    gate.open()
    # Nothing queued: the sender sleeps until the first record, which must wake it.
    gate.arm(0, 0, 0, 0, batch_events=10, batch_bytes=1_000)
    assert (gate.limit_events, gate.attention) == (0, True)
    gate.woken()
    assert (gate.limit_events, gate.limit_bytes, gate.attention) == (100, 10_000, False)
    # Three queued: the tenth record completes a batch and wakes it; so do the bytes.
    gate.arm(3, 0, 0, 300, batch_events=10, batch_bytes=1_000)
    assert (gate.limit_events, gate.limit_bytes) == (9, 999)
    # A full batch waits already: no record need wake the sender, only the caps count.
    gate.arm(10, 0, 0, 1_000, batch_events=10, batch_bytes=1_000)
    assert (gate.limit_events, gate.limit_bytes) == (100, 10_000)


def test_a_closed_or_spilling_gate_sends_every_record_down_the_slow_path() -> None:
    gate = Gate(10, 1_000)
    assert gate.limit_events == CLOSED_LIMIT  # closed until a sender runs
    gate.open()
    gate.woken()
    gate.spill()
    assert gate.limit_events == gate.limit_bytes == CLOSED_LIMIT
    gate.room(15, 1_500)  # records released meanwhile: still behind the backlog
    assert gate.limit_events == CLOSED_LIMIT
    gate.unspill()
    assert (gate.limit_events, gate.limit_bytes) == (15, 1_500)
    gate.close()
    assert gate.limit_events == gate.limit_bytes == CLOSED_LIMIT
    assert gate.attention
