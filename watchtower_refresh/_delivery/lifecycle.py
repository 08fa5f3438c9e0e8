"""A handler's lifecycle states, one rule each.

- ``NEW``: built; nothing sent. The constructor does no I/O. The first record starts a sender
  (with a spool, ``flush()`` does too, so that what dead processes left is replayed).
- ``OPEN``: a sender generation runs and the gate is open: records take the fast path.
- ``CLOSING``: ``close()`` set a deadline and closed the gate. The sender drains; records
  logged meanwhile are delivered too, by a fresh generation if the last one stopped.
- ``CLOSED``: what could not be delivered by the deadline was counted as ``shutdown`` and
  reported in one line on stderr. A record logged now reopens the handler: ``OPEN``.

A forked child starts ``NEW`` with a pipeline of its own; the parent keeps and delivers what
it held. The transitions are made under the ledger's lock, by ``generations.Generations``
(``closing.Closer`` asks for those of ``close()``).
"""

from __future__ import annotations

import enum

__all__ = ["State"]


class State(enum.Enum):
    """Where a handler is in its lifecycle (see the module docstring)."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
