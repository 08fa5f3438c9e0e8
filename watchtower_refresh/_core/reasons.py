"""Why a record was given up: the reasons ``stats.dropped`` counts, and which keep a spooled copy.

A batch the service refuses is counted under the service's error code (``AccessDeniedException``,
``InvalidParameterException``...) or the exception's name: those are open-ended strings. Every
reason the handler decides on its own is a ``DropReason``.
"""

from __future__ import annotations

import enum

__all__ = [
    "DELIBERATE",
    "EXPIRED_TOKEN_CODES",
    "FIXABLE",
    "DropReason",
    "is_fixable",
    "keeps_spooled",
]


class DropReason(str, enum.Enum):
    """A reason the handler gives up a record on its own (the key in ``stats.dropped``)."""

    EMPTY = "empty"
    """An empty message: the service refuses it."""
    FORMAT_ERROR = "format_error"
    """The formatter raised."""
    INTERNAL_ERROR = "internal_error"
    """A fault in this package (reported as a warning)."""
    QUEUE_FULL = "queue_full"
    """The in-memory caps were reached."""
    SPOOL_FULL = "spool_full"
    """Neither the full spool nor the full memory queue could keep it."""
    SPOOL_ERROR = "spool_error"
    """Kept on disk beyond the caps and could not be read back."""
    SHUTDOWN = "shutdown"
    """Still held when ``close()`` or the process ran out of time."""
    TIMEOUT = "timeout"
    """A synchronous put gave up at its deadline (``use_queues=False``)."""
    TOO_NEW = "too_new"
    """More than 2 hours ahead of the clock."""
    TOO_OLD = "too_old"
    """Older than 14 days."""
    EXPIRED = "expired"
    """Older than the group's retention."""


EXPIRED_TOKEN_CODES = frozenset(("ExpiredTokenException", "ExpiredToken", "RequestExpired"))
"""Error codes that mean the session token expired: fresh credentials may succeed."""

DELIBERATE = frozenset((DropReason.EMPTY.value,))
"""Reasons that are the application's choice, not a loss."""

FIXABLE = frozenset(
    (
        *EXPIRED_TOKEN_CODES,  # on a client given as it is: nothing here can refresh it
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "RequestTimeTooSkewed",
        "NoCredentialsError",
        "PartialCredentialsError",
        "NoRegionError",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
    )
)
"""Refusals an operator can fix (a policy, credentials, a region, the clock, the group's KMS
key): with a spool, the records they refuse are held on disk and tried again, not dropped."""

_KEEPS_SPOOLED = frozenset(
    (
        DropReason.SHUTDOWN.value,
        DropReason.TIMEOUT.value,
        DropReason.QUEUE_FULL.value,
        *FIXABLE,
    )
)


def keeps_spooled(reason: str | None) -> bool:
    """Whether a spooled record dropped for ``reason`` stays on disk for a later process.

    A later process may do better on these: more time, more room, a fix of the refusal.
    Only what no fix could make acceptable (``InvalidParameterException``, too old, too
    new) leaves the spool.
    """
    return reason in _KEEPS_SPOOLED


def is_fixable(reason: str | None) -> bool:
    """Whether ``reason`` is a refusal an operator can fix (see ``FIXABLE``)."""
    return reason in FIXABLE
