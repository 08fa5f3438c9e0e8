"""Reading the handler's options from the configuration file an application already has.

``--config`` takes the two files the standard library configures logging from: a
``dictConfig`` dict as JSON (``.json``) or YAML (``.yaml``, ``.yml``), or a ``fileConfig``
INI file (``.ini``, ``.cfg``, ``.conf``). A file with another name is read by its first
character: ``{`` is JSON, ``[`` is INI. The handler's options are taken from the file exactly
as ``logging.config`` would pass them, without running anything the file names.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import inspect
import json
from pathlib import Path
from typing import Any

from .._config import HANDLER_PATH

__all__ = ["UsageError", "add_config_options", "handler_options", "load_handler_options"]

_HANDLER_PATHS = frozenset(
    (HANDLER_PATH, "watchtower_refresh._handler.RefreshingCloudWatchLogHandler")
)
_NOT_HANDLER_OPTIONS = frozenset(("()", "class", "level", "formatter", "filters", "."))
_JSON = (".json",)
_YAML = (".yaml", ".yml")
_INI = (".ini", ".cfg", ".conf")
_FORMATS = (
    "a dictConfig file in JSON (.json) or YAML (.yaml, .yml), "
    "or a fileConfig INI file (.ini, .cfg, .conf)"
)

_HANDLER_FLAGS = (  # command-line flag (argparse dest) and the handler option it sets
    ("role_arn", "role_arn"),
    ("region", "region_name"),
    ("log_group", "log_group_name"),
    ("profile", "profile_name"),
    ("endpoint_url", "endpoint_url"),
    ("kms_key_id", "kms_key_id"),
    ("log_group_class", "log_group_class"),
    ("deletion_protection", "deletion_protection"),
    ("large_events", "large_events"),  # spool --deliver only
)


class UsageError(Exception):
    """A problem with the command line or a file it names: exit code 2."""


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and ``--handler NAME`` to a command."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the application's logging configuration: dictConfig JSON/YAML or fileConfig INI",
    )
    parser.add_argument("--handler", metavar="NAME", help="which handler of --config")


def handler_options(args: argparse.Namespace) -> dict[str, Any]:
    """The handler's options from ``--config``, overridden by the flags given."""
    options = load_handler_options(args.config, args.handler) if args.config else {}
    for flag, name in _HANDLER_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            options[name] = value
    return options


def load_handler_options(path: str, handler_name: str | None = None) -> dict[str, Any]:
    """Return the options of the RefreshingCloudWatchLogHandler in a logging configuration file.

    Args:
        path: A ``dictConfig`` dict in JSON or YAML, or a ``fileConfig`` INI file.
        handler_name: Which handler, when the file has several of ours.

    Raises:
        UsageError: The file cannot be read or parsed, is in another format, or does not
            configure exactly one of our handlers (after ``handler_name``).
    """
    text = _read(path)
    kind = _format(path, text)
    if kind == "ini":
        ours = _ini_handlers(path, text)
    else:
        config = _yaml(path, text) if kind == "yaml" else _json(path, text)
        handlers = config.get("handlers") if isinstance(config, dict) else None
        ours = {
            name: {key: value for key, value in entry.items() if key not in _NOT_HANDLER_OPTIONS}
            for name, entry in (handlers if isinstance(handlers, dict) else {}).items()
            if isinstance(entry, dict) and (entry.get("()") or entry.get("class")) in _HANDLER_PATHS
        }
    if handler_name is not None:
        ours = {name: entry for name, entry in ours.items() if name == handler_name}
    if len(ours) != 1:
        found = "none" if not ours else ", ".join(sorted(ours))
        message = (
            f"{path} must configure exactly one watchtower_refresh.RefreshingCloudWatchLogHandler"
            f" (found: {found}); pick one with --handler NAME"
        )
        raise UsageError(message)
    (options,) = ours.values()
    return options


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}"
        raise UsageError(message) from None
    except UnicodeDecodeError as exc:
        message = f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise UsageError(message) from None


def _format(path: str, text: str) -> str:
    suffix = Path(path).suffix.lower()
    for kind, suffixes in (("json", _JSON), ("yaml", _YAML), ("ini", _INI)):
        if suffix in suffixes:
            return kind
    start = text.lstrip()[:1]
    if start == "{":
        return "json"
    if start == "[":
        return "ini"
    named = f" ({suffix})" if suffix else ""
    message = f"{path}: unsupported format{named}: --config reads {_FORMATS}"
    raise UsageError(message)


def _json(path: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        message = f"{path} is not valid JSON: {exc}"
        raise UsageError(message) from None


def _yaml(path: str, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        message = "reading YAML needs PyYAML: pip install 'watchtower-refresh[yaml]'"
        raise UsageError(message) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = f"{path} is not valid YAML: {exc}"
        raise UsageError(message) from None


def _ini_handlers(path: str, text: str) -> dict[str, dict[str, Any]]:
    """Our handlers of a ``fileConfig`` file, read the way ``logging.config.fileConfig`` does.

    ``fileConfig`` evaluates ``args`` and ``kwargs`` as Python; here they must be literals
    (``ast.literal_eval``), so reading a file never runs code from it.
    """
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=path)
        keys = parser.get("handlers", "keys", fallback="")
    except configparser.Error as exc:
        message = f"{path} is not a valid INI file: {exc}"
        raise UsageError(message) from None
    ours: dict[str, dict[str, Any]] = {}
    for name in (key.strip() for key in keys.split(",") if key.strip()):
        section = f"handler_{name}"
        try:
            klass = parser.get(section, "class", fallback="")
            if klass.strip() not in _HANDLER_PATHS:
                continue
            args = _literal(path, section, "args", parser.get(section, "args", fallback="()"))
            kwargs = _literal(path, section, "kwargs", parser.get(section, "kwargs", fallback="{}"))
        except configparser.Error as exc:
            message = f"{path} is not a valid INI file: {exc}"
            raise UsageError(message) from None
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            message = f"{path} [{section}]: args must be a tuple and kwargs a dict"
            raise UsageError(message)
        ours[name] = _bind(path, section, args, kwargs)
    return ours


def _literal(path: str, section: str, key: str, text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        message = f"{path} [{section}]: {key} must be a Python literal, not {text!r}"
        raise UsageError(message) from None


def _bind(path: str, section: str, args: tuple[Any, ...], kwargs: dict[Any, Any]) -> dict[str, Any]:
    """The handler's options by name, as its constructor would receive ``args`` and ``kwargs``."""
    from .._handler import RefreshingCloudWatchLogHandler

    try:
        bound = inspect.signature(RefreshingCloudWatchLogHandler).bind(*args, **kwargs)
    except TypeError as exc:
        message = f"{path} [{section}]: {exc}"
        raise UsageError(message) from None
    return dict(bound.arguments)
