"""Exceptions and the warning class of watchtower-refresh.

Hierarchy::

    WatchtowerRefreshError (Exception)
    └── ConfigurationError (also ValueError): an argument is invalid; raised by constructors
                                             and by ``refreshable_session``, never by ``emit()``.

    WatchtowerRefreshWarning (watchtower.WatchtowerWarning)
        A delivery problem that must not raise into the application: missing region or
        credentials, access denied, records dropped because the queue was full. Filters set
        on ``watchtower.WatchtowerWarning`` apply to it too.
"""

from __future__ import annotations

import watchtower

__all__ = ["ConfigurationError", "WatchtowerRefreshError", "WatchtowerRefreshWarning"]


class WatchtowerRefreshError(Exception):
    """Base class of every exception raised by watchtower-refresh."""


class ConfigurationError(WatchtowerRefreshError, ValueError):
    """An argument given to the handler or to ``refreshable_session`` is invalid.

    The message names the argument, the value's problem and the accepted values.
    """


class WatchtowerRefreshWarning(watchtower.WatchtowerWarning):
    """A delivery problem reported without raising into the application."""
