"""watchtower-refresh: CloudWatch Logs handler whose temporary credentials refresh themselves.

Public names::

    RefreshingCloudWatchLogHandler  the logging handler (a watchtower subclass)
    refreshable_session             a boto3 session that assumes a role and keeps it fresh
    DeliveryStats                   what a handler did with its records
    ConfigurationError, WatchtowerRefreshError, WatchtowerRefreshWarning
"""

from ._credentials import refresh_windows, refreshable_session
from ._exceptions import ConfigurationError, WatchtowerRefreshError, WatchtowerRefreshWarning
from ._handler import DeliveryStats, RefreshingCloudWatchLogHandler

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DeliveryStats",
    "RefreshingCloudWatchLogHandler",
    "WatchtowerRefreshError",
    "WatchtowerRefreshWarning",
    "__version__",
    "refresh_windows",
    "refreshable_session",
]
