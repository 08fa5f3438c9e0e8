"""Keep AWS secrets out of log output.

botocore logs the raw AssumeRole response (secret key and session token included) at DEBUG
on ``botocore.parsers``, the request headers (session token included) on ``botocore.endpoint``
and the canonical request on ``botocore.auth``. A filter on those loggers rewrites each record
before any handler, ours or the application's, sees it.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SecretRedactingFilter", "install_redaction", "redact"]

REDACTED = "<redacted>"

# Loggers that botocore uses to print requests, responses and credentials.
_LEAKY_LOGGERS = (
    "botocore.auth",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.retryhandler",
    "botocore.utils",
    "urllib3.connectionpool",
)

_PATTERNS = (
    # XML bodies (STS): <SecretAccessKey>...</SecretAccessKey>
    re.compile(r"(<(?:SecretAccessKey|SessionToken|AccessKeyId)>)[^<]*(</)"),
    # JSON bodies and Python reprs: "SecretAccessKey": "...", 'Token': '...'
    re.compile(
        r"""(["']?(?:SecretAccessKey|SessionToken|AccessKeyId|secret_key|secret_access_key|"""
        r"""aws_secret_access_key|aws_session_token|session_token|access_key|token|Token)"""
        r"""["']?\s*[:=]\s*b?["'])[^"']*(["'])""",
    ),
    # Headers as a dict repr or in a canonical request: 'X-Amz-Security-Token': '...'
    re.compile(r"""(x-amz-security-token["']?\s*[:=]\s*b?["']?)[^"'\s,}]+()""", re.IGNORECASE),
    # Authorization header: Credential=ASIA.../20261122/...
    re.compile(r"(Credential=)[A-Z0-9]{16,128}()"),
)

_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,124}\b")


def redact(text: str) -> str:
    """Return ``text`` with AWS access keys, secret keys and session tokens replaced.

    Args:
        text: Any text that may carry credentials: a log message, a repr, an error message.

    Returns:
        The text with every recognised secret replaced by ``<redacted>``.
    """
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)
    return _ACCESS_KEY_ID.sub(REDACTED, text)


class SecretRedactingFilter(logging.Filter):
    """A logging filter that rewrites records so that they carry no AWS secret.

    The record's message is formatted once, redacted, and stored back with no arguments;
    exception text is redacted too. Records are never dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place.

        Args:
            record: The record about to be handled.

        Returns:
            Always True: the record is kept.
        """
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format is the handler's business, not ours
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Formatted here, as a handler would, so the traceback's text can be cleaned.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = SecretRedactingFilter()


def install_redaction() -> None:
    """Attach the redacting filter to each botocore logger that prints secrets.

    Idempotent (``addFilter`` ignores a filter already attached). Called when a handler or a
    refreshing session is created, so that an application logging at DEBUG does not print
    the credentials.
    """
    for name in _LEAKY_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
