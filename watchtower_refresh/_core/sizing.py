"""How big an event a formatted message makes, under one handler's options.

CloudWatch Logs takes events of at most ``max_message_size`` bytes, 26 of them overhead
(``_core.events``). ``emit()`` sizes an ASCII message within that limit itself, inline: its
length is its size. Everything else comes here: non-ASCII text, which is encoded, escaped or
given an upper bound, and a message over the limit, which is truncated or, with
``large_events="split"``, kept whole and charged the size of its parts (``_core.parts``).

The same rules size a record read back from a spool (``read_back``), whether this process's
backlog or a dead process's records being replayed. ``Sizing`` holds the rules only; what it
marks (``truncated``, the queue's ``estimated``) is the ledger's, written under the
handler's lock like the rest of the admission path.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Protocol

from .events import ESTIMATE_PER_CHAR, EVENT_OVERHEAD, truncate, utf8_size
from .ledger import Ledger
from .parts import split_size

__all__ = ["Sizing"]


class Settings(Protocol):
    """The options that size an event."""

    @property
    def max_message_size(self) -> int: ...
    @property
    def large_events(self) -> str: ...
    @property
    def spool_dir(self) -> str | None: ...


class Sizing:
    """One handler's rules for an event's size: the limit, truncation or a split's size.

    Args:
        options: The handler's options (``max_message_size``, ``large_events``,
            ``spool_dir``).
    """

    __slots__ = ("estimate", "limit", "split")

    def __init__(self, options: Settings) -> None:
        self.limit = options.max_message_size - EVENT_OVERHEAD
        """Most UTF-8 bytes of a message, in bytes (the event's overhead left out)."""
        self.split = options.large_events == "split"
        # Without a spool (which writes the bytes) non-ASCII text is not encoded in emit().
        self.estimate = options.spool_dir is None

    def text(self, message: str, ledger: Ledger) -> tuple[str, int, bytes | None]:
        """Size non-ASCII ``message``: ``(message, size, its UTF-8 bytes or None)``.

        Encoding 1 KB of such text costs the caller as much as a third of a
        ``StreamHandler``'s whole ``emit()``. Without a spool (which writes the bytes), the
        size is therefore an upper bound, charged to the caps until the sender sizes it
        exactly, and given negative (see ``Event``) when it is within the size limit.
        Otherwise: lone surrogates escaped, so the record is still sent, and the message cut
        to ``max_message_size``.
        """
        limit = self.limit
        bound = len(message) * ESTIMATE_PER_CHAR
        if self.estimate and bound <= limit:
            ledger.queue.estimated = True
            return message, -bound, None
        text: bytes | None
        try:
            text = message.encode()
        except UnicodeEncodeError:  # lone surrogates: escaped, so the record is sent
            message, size = utf8_size(message)
            text = None
        else:
            size = len(text)
        if size > limit:
            message, size = self.cut(message, size, text, ledger)
            if size > limit:
                return message, size, text  # split: the spool keeps the whole message
            text = None
        return message, size, text

    def read_back(
        self,
        message: str,
        ledger: Ledger,
        lock: AbstractContextManager[object] | None = None,
    ) -> tuple[str, int]:
        """Size ``message``, read back from a spool: ``(message, size)``, exact, and cut like
        a new record's when over the limit (a record kept whole for a split, or written under
        other options by a dead process). Only the cut, which counts a truncation, is made
        under ``lock`` (the handler's; None: the caller holds it)."""
        message, size = utf8_size(message)
        if size > self.limit:
            with lock or contextlib.nullcontext():
                message, size = self.cut(message, size, None, ledger)
        return message, size

    def cut(self, message: str, size: int, text: bytes | None, ledger: Ledger) -> tuple[str, int]:
        """A message of ``size`` bytes over the limit: ``(message, size)``, split
        (``large_events``; the size is then the split's, see ``_core.parts``) or truncated
        (counted in ``ledger.truncated``)."""
        if self.split:
            split = split_size(message, size, self.limit, text)
            if split + EVENT_OVERHEAD <= ledger.max_bytes:
                return message, split
        ledger.truncated += 1
        return truncate(message, size, self.limit)
