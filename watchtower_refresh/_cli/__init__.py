"""The ``watchtower-refresh`` command line: the parser in ``app``, then one module per command.

Nothing else in the package imports this one.
"""

from .app import EXIT_DEMO_LOST, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main

__all__ = ["EXIT_DEMO_LOST", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]
