"""Django settings: the LOGGING dict sends the project's records to CloudWatch Logs."""

from __future__ import annotations

import os

SECRET_KEY = "example-only-not-secret"  # noqa: S105 - an example's placeholder
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
ROOT_URLCONF = "urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["middleware.LogBufferMiddleware"]  # a span and a log_buffer() per request
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "local": {
            "()": "watchtower_refresh.LocalTimeFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s [%(trace_id)s] %(message)s",
            "tz": "Europe/Berlin",
        },
    },
    "handlers": {
        "cloudwatch": {
            "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
            "formatter": "local",
            "log_group_name": "/app/orders-django",
            "role_arn": os.environ.get(
                "APP_LOG_ROLE_ARN", "arn:aws:iam::123456789012:role/app-logs"
            ),
            "duration_seconds": 900,
            "buffer_at": "DEBUG",  # a request's DEBUG records ship only if it logs an ERROR
            # runserver's autoreloader kills the serving process with SIGKILL on SIGTERM
            # and Ctrl-C: a spool keeps what it had not sent (docs/stopping.md).
            "spool_dir": os.environ.get("APP_LOG_SPOOL_DIR"),
        },
    },
    "loggers": {
        "orders": {"handlers": ["cloudwatch"], "level": "DEBUG"},
        "django.request": {"handlers": ["cloudwatch"], "level": "WARNING"},
    },
}
