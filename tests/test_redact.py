"""Secrets are cut out of text and of botocore's log records."""

from __future__ import annotations

import logging
import sys

import pytest

from watchtower_refresh._redact import SecretRedactingFilter, install_redaction, redact

TOKEN = "FQoGZXIvYXdzEBYaDquX0Y81jP7VXxr+/Ywa2Gi=="
SECRET = "o779eB0zOGN2F4isrpgIFR+ZillNJl2VVZUg9oPr"
KEY = "ASIARZPUZDIKD5ZZ7LEI"


@pytest.mark.parametrize(
    "text",
    [
        f"<AccessKeyId>{KEY}</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey>"
        f"<SessionToken>{TOKEN}</SessionToken>",
        f"{{'SecretAccessKey': '{SECRET}', 'SessionToken': '{TOKEN}', 'AccessKeyId': '{KEY}'}}",
        f'{{"secret_key": "{SECRET}", "token": "{TOKEN}", "access_key": "{KEY}"}}',
        f"headers={{'X-Amz-Security-Token': b'{TOKEN}', 'Authorization': b'AWS4-HMAC-SHA256 "
        f"Credential={KEY}/20261122/us-east-1/logs/aws4_request'}} {SECRET[:0]}",
        f"host:logs\nx-amz-security-token:{TOKEN}\n",
        f"aws_secret_access_key = '{SECRET}' and {KEY}",
    ],
)
def test_redact_removes_every_form(text: str) -> None:
    cleaned = redact(text)
    for secret in (TOKEN, SECRET, KEY):
        assert secret not in cleaned
    assert "<redacted>" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    text = "PutLogEvents to /svc/app: 12 events, status 200"
    assert redact(text) == text


def test_filter_rewrites_message_args_and_traceback() -> None:
    try:
        raise RuntimeError(f"<SessionToken>{TOKEN}</SessionToken>")
    except RuntimeError:
        record = logging.LogRecord(
            "botocore.parsers",
            logging.DEBUG,
            __file__,
            1,
            "Response body: %s",
            (f"<SecretAccessKey>{SECRET}</SecretAccessKey>",),
            sys.exc_info(),
        )
    assert SecretRedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert SECRET not in text
    assert TOKEN not in text
    assert "RuntimeError" in text


def test_filter_leaves_broken_format_to_the_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("nan",), None)
    assert SecretRedactingFilter().filter(record)
    assert record.args == ("nan",)


def test_install_is_idempotent() -> None:
    install_redaction()
    install_redaction()
    filters = logging.getLogger("botocore.parsers").filters
    assert sum(isinstance(f, SecretRedactingFilter) for f in filters) == 1
