"""gunicorn settings for ``--preload`` with uvicorn's worker (README, "Stopping cleanly").

That worker resets SIGTERM to the default action after the fork, and uvicorn restores it
after its graceful shutdown: the handler installed while the application was preloaded is
gone. ``post_worker_init`` runs in each worker after that reset, before uvicorn starts.
"""

from __future__ import annotations

from typing import Any

from watchtower_refresh import install_sigterm_handler


def post_worker_init(worker: Any) -> None:
    """Put the SIGTERM handler back in each worker."""
    install_sigterm_handler()
