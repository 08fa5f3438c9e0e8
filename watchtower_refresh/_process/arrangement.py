"""What every handler's constructor asks of the process: deliver it however the process ends."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .lifecycle import Lifecycle
from .pools import hook_pools
from .signals import install_sigterm_handler, watch

__all__ = ["arrange"]


def arrange(live: Callable[[], Sequence[Lifecycle]], *, handle_signals: bool = True) -> None:
    """Arrange that the handlers ``live()`` returns are delivered however the process ends.

    Called by every handler's constructor; cheap and idempotent. multiprocessing, billiard
    and Celery are hooked if the application imported them, and again at every fork; the
    SIGTERM handler, with ``handle_signals``, is installed on every call from the main
    thread, so one that the application installed since is chained to from then on.

    Args:
        live: Returns every handler alive in the process.
        handle_signals: Also install the SIGTERM handler (main thread only).
    """
    watch(live, handle_signals=handle_signals)
    hook_pools()
    if handle_signals:
        install_sigterm_handler()
