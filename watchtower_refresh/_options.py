"""Argument validation shared by the handler and ``refreshable_session``.

Every option may arrive as a plain string (from YAML, JSON, INI or an environment variable),
so each helper accepts the typed value or its text and raises ``ConfigurationError`` naming
the option and the accepted values.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._exceptions import ConfigurationError

__all__ = [
    "KMS_KEY_PATTERN",
    "KMS_KEY_RULE",
    "LOG_GROUP_PATTERN",
    "LOG_GROUP_RULE",
    "LOG_STREAM_PATTERN",
    "LOG_STREAM_RULE",
    "RETENTION_DAYS",
    "ROLE_ARN_PATTERN",
    "ROLE_ARN_RULE",
    "ROLE_SESSION_NAME_PATTERN",
    "ROLE_SESSION_NAME_RULE",
    "as_bool",
    "as_callable",
    "as_float",
    "as_int",
    "as_optional_str",
    "as_pairs",
    "as_retention_days",
    "as_tags",
    "check_pattern",
]

# The character sets AWS documents, spelt out: Python's \w would also accept any Unicode
# letter or digit, which the services refuse. check_pattern matches with re.ASCII as well.
LOG_GROUP_PATTERN = r"[._/#A-Za-z0-9-]{1,512}"
LOG_GROUP_RULE = "1 to 512 characters of A-Z, a-z, 0-9 and _-./#"
LOG_STREAM_PATTERN = r"[^:*]{1,512}"
LOG_STREAM_RULE = "1 to 512 characters, none of them ':' or '*'"
# CreateLogGroup's kmsKeyId: the key's ARN (at most 256 characters), as the service takes it.
KMS_KEY_PATTERN = r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]{1,200}"
KMS_KEY_RULE = "expected a KMS key ARN, arn:aws:kms:<region>:<12-digit account>:key/<key id>"
# IAM role names and paths, and STS RoleSessionName: [\w+=,.@-], ASCII only.
ROLE_ARN_PATTERN = r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}"
ROLE_ARN_RULE = "expected arn:aws:iam::<12-digit account>:role/<name of A-Za-z0-9_+=,.@->"
ROLE_SESSION_NAME_PATTERN = r"[A-Za-z0-9_+=,.@-]{2,64}"
ROLE_SESSION_NAME_RULE = "2 to 64 characters of A-Z, a-z, 0-9 and _+=,.@-"
# Retention periods PutRetentionPolicy accepts, in days.
RETENTION_DAYS = frozenset(
    (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
) | frozenset((2922, 3288, 3653))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def as_bool(name: str, value: object) -> bool:
    """Return ``value`` as a bool; accepts bools and true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    message = f"{name} must be true or false, not {value!r}"
    raise ConfigurationError(message)


def as_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int within ``[minimum, maximum]``; accepts its decimal text."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    if number is None or number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        message = f"{name} must be a whole number at least {minimum}{upper}, not {value!r}"
        raise ConfigurationError(message)
    return number


def as_float(name: str, value: object, *, minimum: float, maximum: float | None = None) -> float:
    """Return ``value`` as a float within ``[minimum, maximum]``; accepts its text.

    A ``datetime.timedelta`` is accepted too, as watchtower accepts one for ``send_interval``.
    """
    total_seconds = getattr(value, "total_seconds", None)
    number: float | None = None
    if callable(total_seconds):
        number = float(total_seconds())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if (
        number is None
        or not math.isfinite(number)  # inf would overflow a timeout; nan compares false
        or number < minimum
        or (maximum is not None and number > maximum)
    ):
        upper = "" if maximum is None else f" and at most {maximum}"
        message = f"{name} must be a number at least {minimum}{upper}, not {value!r}"
        raise ConfigurationError(message)
    return number


def as_optional_str(name: str, value: object) -> str | None:
    """Return ``value`` as a non-empty string, or None for None or an empty string."""
    if value is None:
        return None
    if not isinstance(value, str):
        message = f"{name} must be a string, not {type(value).__name__}"
        raise ConfigurationError(message)
    stripped = value.strip()
    return stripped or None


def check_pattern(name: str, value: str, pattern: str, rule: str) -> str:
    """Return ``value`` if it matches ``pattern`` in full; else raise, quoting ``rule``.

    Matched with ``re.ASCII``: ``\\w`` and ``\\d`` mean what AWS's documentation means.
    """
    if not re.fullmatch(pattern, value, flags=re.ASCII):
        message = f"{name} {value!r} is invalid: {rule}"
        raise ConfigurationError(message)
    return value


def as_retention_days(name: str, value: object) -> int | None:
    """Return a log group retention in days, one of ``RETENTION_DAYS``; None for none or "".

    Shared by the handler and ``watchtower-refresh policy``, so both accept the same values.
    """
    if value is None or value == "":
        return None
    days = as_int(name, value, minimum=1)
    if days not in RETENTION_DAYS:
        allowed = ", ".join(str(day) for day in sorted(RETENTION_DAYS))
        message = f"{name} must be one of {allowed}, not {days}"
        raise ConfigurationError(message)
    return days


def as_pairs(name: str, text: str, form: str) -> dict[str, str]:
    """Parse ``a=1, b=2`` into a dict of stripped strings; ``form`` names a pair in errors."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if any(not sep or not key.strip() for key, sep, _ in pairs):
        message = f"{name} must be {form} pairs separated by commas, not {text!r}"
        raise ConfigurationError(message)
    return {key.strip(): val.strip() for key, _, val in pairs}


def as_tags(name: str, value: object) -> dict[str, str]:
    """Return tags as a dict of strings.

    Accepts a mapping, a JSON object, or ``key=value`` pairs separated by commas.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                message = f"{name} is not a valid JSON object: {exc}"
                raise ConfigurationError(message) from None
        else:
            value = as_pairs(name, text, "key=value")
    if not isinstance(value, Mapping):
        message = f"{name} must be a mapping of tag names to values, not {type(value).__name__}"
        raise ConfigurationError(message)
    return {str(key): str(val) for key, val in value.items()}


def as_callable(name: str, value: object) -> Callable[..., Any] | None:
    """Return a callable given itself or its dotted path (``package.module:name`` or ``.name``).

    The module is imported here, when the handler is configured, so a misspelt path fails
    at start-up rather than at the first record.
    """
    if value is None or value == "":
        return None
    if callable(value):
        return value
    if not isinstance(value, str):
        message = f"{name} must be a callable or a dotted path to one, not {type(value).__name__}"
        raise ConfigurationError(message)
    module_name, sep, attribute = value.partition(":")
    if not sep:
        module_name, _, attribute = value.rpartition(".")
    if not module_name or not attribute:
        message = f"{name} {value!r} is not a dotted path such as 'package.module:function'"
        raise ConfigurationError(message)
    try:
        target: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        message = f"{name} {value!r} cannot be imported: {exc}"
        raise ConfigurationError(message) from None
    if not callable(target):
        message = f"{name} {value!r} is not callable"
        raise ConfigurationError(message)
    return target
