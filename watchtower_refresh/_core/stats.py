"""``DeliveryStats``: what a handler did with the records it was given (``Ledger.snapshot``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["DeliveryStats"]


@dataclasses.dataclass(frozen=True)
class DeliveryStats:
    """A snapshot of what a handler did with the records it was given, in this process.

    Every record given to ``emit()`` is in exactly one of ``delivered``, ``dropped`` (under
    its reason; the service's refusals are also counted in ``rejected``) or ``queued``.
    """

    delivered: int = 0
    """Events the service accepted."""
    rejected: int = 0
    """Events the service refused one by one (too new, too old, expired); see ``dropped``."""
    dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Records given up, by reason: ``queue_full``, ``shutdown``, ``timeout``, ``empty``,
    ``format_error``, ``too_new``, ``too_old``, ``expired``, ``internal_error``, or the AWS
    error code or exception name that refused the batch; ``spool_full`` for a record that
    neither the full spool nor the full memory queue could keep; ``spool_error`` for a record
    kept on disk beyond the caps that could not be read back."""
    retried: int = 0
    """Puts resent after a throttle, a 5xx, a connection error or a missing resource."""
    credential_refreshes: int = 0
    """Times fresh credentials were fetched after the service said the token had expired."""
    truncated: int = 0
    """Messages cut to ``max_message_size`` (and still delivered, or counted elsewhere)."""
    queued: int = 0
    """Records waiting to be sent or in flight (with a spool, also those waiting on disk:
    beyond the caps, or held after a refusal an operator can fix)."""
    replayed: int = 0
    """Records adopted from the spool of a dead process and delivered (also in
    ``delivered``): with a spool, ``received`` counts them as well as the records given to
    ``emit()``."""
    corrupt: int = 0
    """Records found damaged in the spool and skipped: never delivered, never in ``received``."""
    discarded: int = 0
    """Records a ``log_buffer()`` scope held and let go, as ``buffer_at`` asks: the scope
    ended without an error, or its byte cap pushed them out. Not losses, so never in
    ``dropped`` nor in ``received``."""

    @property
    def dropped_total(self) -> int:
        """Records given up, whatever the reason (the service's refusals included)."""
        return sum(self.dropped.values())

    @property
    def received(self) -> int:
        """Records given to the handler: ``delivered + dropped_total + queued``."""
        return self.delivered + self.dropped_total + self.queued
