"""The ``watchtower-refresh`` command line.

Nothing else in the package imports this one.
"""

from .app import EXIT_DEMO_LOST, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main

__all__ = ["EXIT_DEMO_LOST", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]
