"""What a writer or an adoption did, in counts of records."""

from __future__ import annotations

import dataclasses

__all__ = ["SpoolStats"]


@dataclasses.dataclass
class SpoolStats:
    """What a writer or an adoption did. Every field is a count of records unless named.

    Attributes:
        appended: Records written by ``append``.
        acked: Records acknowledged (by ``ack`` or a batch's ``ack``).
        full: Appends refused because the directory held ``max_bytes``, or because the file
            system is full (``ENOSPC``, ``EDQUOT``).
        errors: Appends that failed otherwise (an ``OSError``, a stream name over 65,535
            bytes, a record over ``MAX_PAYLOAD`` bytes).
        adopted: Records yielded for replay from dead owners.
        corrupt: Records lost to damage: exact where the ids around the damage tell (a cut
            or emptied segment, a file that cannot be read), at least one for damage after
            a writer's last readable record.
        owners_adopted: Dead owners claimed.
        newer_files: Files of a newer format version left untouched.
    """

    appended: int = 0
    acked: int = 0
    full: int = 0
    errors: int = 0
    adopted: int = 0
    corrupt: int = 0
    owners_adopted: int = 0
    newer_files: int = 0
