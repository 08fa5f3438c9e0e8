"""watchtower-refresh: CloudWatch Logs handler whose temporary credentials refresh themselves.

Public names::

    RefreshingCloudWatchLogHandler  the logging handler (a watchtower subclass)
    refreshable_session             a boto3 session that assumes a role and keeps it fresh
    LocalTimeFormatter              timestamps in a chosen zone with their offset; JSON mode
    logging_config                  the common case as a dictConfig dict (and environment)
    configure_logging               apply it
    configure_structlog             send structlog events through stdlib logging as JSON
    flush_logs, flushing            flush every handler at the end of a Lambda invocation
    flush_handlers                  flush every handler now, within a time limit
    log_buffer                      a scope whose debug records ship only if it fails
    join_parts                      join records sent in parts (large_events="split") back
    install_sigterm_handler         deliver on SIGTERM (again, after a framework reset it)
    DeliveryStats                   what a handler did with its records
    ConfigurationError, WatchtowerRefreshError, WatchtowerRefreshWarning
"""

from ._aws import refresh_windows, refreshable_session
from ._buffer import log_buffer
from ._config import configure_logging, logging_config
from ._core.parts import join_parts
from ._exceptions import ConfigurationError, WatchtowerRefreshError, WatchtowerRefreshWarning
from ._formatter import LocalTimeFormatter
from ._handler import DeliveryStats, RefreshingCloudWatchLogHandler
from ._lambda import flush_handlers, flush_logs, flushing
from ._process import install_sigterm_handler
from ._structlog import configure_structlog

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DeliveryStats",
    "LocalTimeFormatter",
    "RefreshingCloudWatchLogHandler",
    "WatchtowerRefreshError",
    "WatchtowerRefreshWarning",
    "__version__",
    "configure_logging",
    "configure_structlog",
    "flush_handlers",
    "flush_logs",
    "flushing",
    "install_sigterm_handler",
    "join_parts",
    "log_buffer",
    "logging_config",
    "refresh_windows",
    "refreshable_session",
]
