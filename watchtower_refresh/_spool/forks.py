"""The spool's one fork hook: a child drops what it inherited from its parent.

The child shares the parent's open file descriptions, ``flock`` included: it closes them,
so that the parent's death is seen as one and the child never appends to the parent's
files. Writers and claims register here; :func:`after_fork_in_child` is registered with
the process layer's ``at_fork`` once, at import.
"""

from __future__ import annotations

import weakref
from typing import Protocol

from .._process import at_fork

__all__ = ["LIVE", "after_fork_in_child"]


class _Forgets(Protocol):
    def _forget_after_fork(self) -> None: ...


LIVE: weakref.WeakSet[_Forgets] = weakref.WeakSet()
"""Writers and claims holding descriptors a forked child must drop."""


def after_fork_in_child() -> None:
    """Drop every registered writer's and claim's inherited descriptors and locks."""
    for holder in list(LIVE):
        holder._forget_after_fork()


at_fork(after_in_child=after_fork_in_child)
