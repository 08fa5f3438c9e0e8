import logging.config

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "cloudwatch": {
                "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                "log_group_name": "/app/orders",
                "log_stream_name": "{machine_name}/{program_name}",
                "role_arn": "arn:aws:iam::123456789012:role/app-logs",
                "duration_seconds": 900,
                "region_name": "eu-west-1",
            },
        },
        "root": {"handlers": ["cloudwatch"], "level": "INFO"},
    }
)

logging.getLogger("orders").info("order %s placed", 1042)
