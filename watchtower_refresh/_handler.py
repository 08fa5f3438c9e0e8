"""``RefreshingCloudWatchLogHandler``: watchtower's handler, rebuilt around refreshing credentials.

How a record travels:

1. ``emit()`` (caller's thread) formats the record, sizes it, truncates it if needed and
   appends an ``Event`` to one bounded in-memory queue, taking no lock beyond the handler's
   own. Nothing else: stream names are cached per logger, the clock is read only when the
   queue was empty, and nothing touches the network.
2. One sender thread per handler drains the queue when a batch is full, ``send_interval``
   has passed since the oldest waiting event, or ``flush()``/``close()`` asks. It builds the
   ``logs`` client on first use (so the constructor does no I/O), creates the group and
   streams, sets aside events outside the service's time window, splits the rest into
   batches within the service limits and puts them.
3. Each failure is classified by its error code: refresh the credentials and resend, back
   off and resend, create the missing group or stream and resend, or give up on that batch
   with one warning that says what to change. Every record ends up counted in ``stats``:
   delivered, or dropped with a reason.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import platform
import random
import string
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3
import watchtower

from ._batching import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    Event,
    count_rejected,
    split_batches,
    split_by_age,
    truncate,
    utf8_size,
)
from ._credentials import SessionOptions
from ._destination import Destination
from ._exceptions import ConfigurationError, WatchtowerRefreshWarning
from ._failures import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    MAX_QUICK_RETRIES,
    Outcome,
    advice,
    classify,
    error_code,
)
from ._options import (
    LOG_GROUP_PATTERN,
    LOG_GROUP_RULE,
    as_bool,
    as_callable,
    as_float,
    as_int,
    as_optional_str,
    as_tags,
    check_pattern,
)
from ._redact import install_redaction, redact
from ._shutdown import arrange as arrange_shutdown
from ._shutdown import keep_sigterm_off_this_thread

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["DeliveryStats", "RefreshingCloudWatchLogHandler", "live_handlers"]

DEFAULT_LOG_GROUP_NAME = "watchtower"
DEFAULT_LOG_STREAM_NAME = watchtower.DEFAULT_LOG_STREAM_NAME
DEFAULT_QUEUE_MAX_EVENTS = 100_000
DEFAULT_QUEUE_MAX_BYTES = 64 * 1024 * 1024
RETENTION_DAYS = frozenset(
    (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
) | frozenset((2922, 3288, 3653))
_STREAM_FIELDS = frozenset(
    ("machine_name", "program_name", "process_id", "logger_name", "thread_name", "strftime")
)
_PER_RECORD_FIELDS = frozenset(("logger_name", "thread_name", "strftime"))
_STREAM_CACHE_SIZE = 10_000  # stream names kept, by (logger, thread)

_local = threading.local()
_new_event = tuple.__new__  # Event(...) through NamedTuple's Python-level __new__ is slower
_DEFAULT_FORMATTER = logging.Formatter()
_live: weakref.WeakSet[RefreshingCloudWatchLogHandler] = weakref.WeakSet()


def live_handlers() -> list[RefreshingCloudWatchLogHandler]:
    """Every handler of this class alive in this process."""
    return list(_live)


def _holds_logging_lock() -> bool:
    """True when this thread holds the logging module's lock, as dictConfig does throughout.

    The sender thread needs that lock for botocore's own logging calls, so waiting for it
    then would only wait out the timeout. ``_is_owned`` is the RLock method that
    ``threading.Condition`` relies on; without it, the answer is False and waits are bounded.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


@dataclasses.dataclass(frozen=True)
class DeliveryStats:
    """A snapshot of what a handler did with the records it was given.

    Every record given to ``emit()`` ends up in ``delivered``, ``rejected``, one of the
    ``dropped`` reasons, or ``queued`` (still waiting or in flight).
    """

    delivered: int = 0
    """Events the service accepted."""
    rejected: int = 0
    """Events the service refused one by one (too new, too old, expired); see ``dropped``."""
    dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Records given up, by reason: ``queue_full``, ``shutdown``, ``timeout``, ``empty``,
    ``format_error``, ``too_new``, ``too_old``, ``expired``, or the AWS error code or
    exception name that refused the batch."""
    retried: int = 0
    """Puts resent after a throttle, a 5xx, a connection error or a missing resource."""
    credential_refreshes: int = 0
    """Times fresh credentials were fetched after the service said the token had expired."""
    truncated: int = 0
    """Messages cut to ``max_message_size``."""
    queued: int = 0
    """Records waiting to be sent or in flight."""

    @property
    def dropped_total(self) -> int:
        """Records given up, whatever the reason."""
        return sum(self.dropped.values())


def _pick_alias(
    name: str, value: str | None, default: str | None, old_name: str, old_value: str | None
) -> str | None:
    """Return the value of an option that watchtower also accepts under an older name."""
    if old_value is None:
        return value
    if value != default:
        message = f"give {name} or its older name {old_name}, not both"
        raise ConfigurationError(message)
    if old_name != "boto3_profile_name":
        warnings.warn(f"{old_name} is deprecated: use {name}", DeprecationWarning, stacklevel=4)
    return old_value


def _warn(message: str) -> None:
    """Issue a WatchtowerRefreshWarning that cannot raise into a sender or a caller.

    Under ``-W error`` a warning becomes an exception in whichever thread issues it; the
    message is then written to stderr instead.
    """
    try:
        warnings.warn(redact(message), WatchtowerRefreshWarning, stacklevel=3)
    except Exception:
        with contextlib.suppress(Exception):  # nowhere left to report to
            sys.stderr.write(f"WatchtowerRefreshWarning: {redact(message)}\n")


class RefreshingCloudWatchLogHandler(watchtower.CloudWatchLogHandler):
    """A logging handler that ships records to CloudWatch Logs with refreshing credentials.

    A drop-in subclass of ``watchtower.CloudWatchLogHandler``: it takes watchtower's
    arguments, plus the ones that say where credentials come from. The constructor only
    validates; it builds no client and makes no network call, so it is safe at import time
    and in Lambda's init phase. The ``logs`` client is built once per process, on the sender
    thread, at the first delivery; after ``os.fork()`` the child builds its own.

    Every option may be given as a string, so ``logging.config.dictConfig`` can build the
    handler from YAML, JSON or INI with
    ``"()": "watchtower_refresh.RefreshingCloudWatchLogHandler"``.

    Args:
        log_group_name: Log group to write to; 1 to 512 characters of ``[A-Za-z0-9_./#-]``.
        log_stream_name: Stream name template with watchtower's fields ``{machine_name}``,
            ``{program_name}``, ``{process_id}``, ``{logger_name}``, ``{thread_name}`` and
            ``{strftime:%Y-%m-%d}`` (UTC, from the record's time). Colons and ``*`` in the
            result become ``-``.
        use_queues: True (the default) sends from a background thread in batches; False
            sends each record from the caller's thread, with the same refresh and retry
            rules, waiting at most ``flush_timeout`` seconds per record.
        send_interval: Longest time, in seconds, a record waits before its batch is sent.
        max_batch_size: Largest batch in bytes (UTF-8 message bytes + 26 per event), at most
            1,048,576.
        max_batch_count: Most events per batch, at most 10,000.
        boto3_client: A ready ``logs`` client. Its credentials are used as they are: if they
            expire, nothing can refresh them; prefer the options below.
        boto3_profile_name: watchtower's name for ``profile_name``.
        create_log_group: Create the group if it does not exist (needs
            ``logs:CreateLogGroup``).
        log_group_tags: Tags for the group: a mapping, a JSON object, or ``k=v,k2=v2``.
        json_serialize_default: ``default`` function for ``json.dumps`` of dict messages,
            or its dotted path.
        log_group_retention_days: Retention policy for the group, in days (one of the
            values CloudWatch Logs accepts), or None to leave it.
        create_log_stream: Create streams as needed (needs ``logs:CreateLogStream``).
        max_message_size: Largest event in bytes, counting the 26-byte overhead; default and
            maximum 1,048,576. A longer message is cut and ends with
            ``[truncated: N bytes in all]``.
        log_group: Deprecated watchtower alias of ``log_group_name``.
        stream_name: Deprecated watchtower alias of ``log_stream_name``.
        role_arn: Role to assume for delivery; see ``refreshable_session``.
        role_session_name: RoleSessionName, 2 to 64 characters; default ``program@host``.
        duration_seconds: Credential lifetime to request, 900 to 43,200 seconds.
        external_id: ExternalId for AssumeRole.
        region_name: Region of CloudWatch Logs and STS.
        profile_name: Profile to use (with ``role_arn``: the source of credentials).
        endpoint_url: CloudWatch Logs endpoint, e.g. a VPC endpoint or a local stand-in.
            ``AWS_ENDPOINT_URL_LOGS`` and ``AWS_ENDPOINT_URL`` are honoured without it.
        session_factory: A callable returning a ``boto3.Session``, or its dotted path
            (``package.module:function``). Called on the sender thread at first delivery
            and again after an expired-token error. Excludes the credential options above.
        queue_max_events: Most records held in memory (queued or in flight); more are
            dropped and counted as ``queue_full``. Default 100,000.
        queue_max_bytes: Most message bytes held in memory, counting 26 bytes per record.
            Default 64 MiB.
        flush_timeout: Longest time, in seconds, that ``close()`` (and so interpreter exit)
            waits for delivery, and that a record waits in ``use_queues=False`` mode.
            Default 10.
        level: The handler's level.
        handle_signals: True (the default) installs, from the main thread, a SIGTERM
            handler that delivers every handler's records (within 8 seconds) before the
            process ends as it would have; False leaves SIGTERM alone.
    """

    def __init__(
        self,
        log_group_name: str = DEFAULT_LOG_GROUP_NAME,
        log_stream_name: str = DEFAULT_LOG_STREAM_NAME,
        use_queues: bool | str = True,
        send_interval: float | str = 5.0,
        max_batch_size: int | str = MAX_BATCH_BYTES,
        max_batch_count: int | str = MAX_BATCH_EVENTS,
        boto3_client: Any = None,
        boto3_profile_name: str | None = None,
        create_log_group: bool | str = True,
        log_group_tags: Mapping[str, str] | str | None = None,
        json_serialize_default: Callable[[Any], Any] | str | None = None,
        log_group_retention_days: int | str | None = None,
        create_log_stream: bool | str = True,
        max_message_size: int | str = MAX_EVENT_BYTES,
        log_group: str | None = None,
        stream_name: str | None = None,
        *,
        role_arn: str | None = None,
        role_session_name: str | None = None,
        duration_seconds: int | str | None = None,
        external_id: str | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
        endpoint_url: str | None = None,
        session_factory: Callable[[], boto3.Session] | str | None = None,
        queue_max_events: int | str = DEFAULT_QUEUE_MAX_EVENTS,
        queue_max_bytes: int | str = DEFAULT_QUEUE_MAX_BYTES,
        flush_timeout: float | str = 10.0,
        level: int | str = logging.NOTSET,
        handle_signals: bool | str = True,
    ) -> None:
        # watchtower's __init__ builds a client and calls AWS; only logging's runs here.
        logging.Handler.__init__(self, level)
        install_redaction()
        group = _pick_alias(
            "log_group_name", log_group_name, DEFAULT_LOG_GROUP_NAME, "log_group", log_group
        )
        self.log_group_name = check_pattern(
            "log_group_name", str(group), LOG_GROUP_PATTERN, LOG_GROUP_RULE
        )
        template = _pick_alias(
            "log_stream_name", log_stream_name, DEFAULT_LOG_STREAM_NAME, "stream_name", stream_name
        )
        self.log_stream_name = self._check_template(str(template))
        self.use_queues = as_bool("use_queues", use_queues)
        # watchtower annotates whole seconds; fractions work here.
        interval = as_float("send_interval", send_interval, minimum=0.0)
        self.send_interval = interval  # type: ignore[assignment]
        self.max_batch_size = as_int(
            "max_batch_size", max_batch_size, minimum=EVENT_OVERHEAD + 1, maximum=MAX_BATCH_BYTES
        )
        self.max_batch_count = as_int(
            "max_batch_count", max_batch_count, minimum=1, maximum=MAX_BATCH_EVENTS
        )
        self.max_message_size = as_int(
            "max_message_size",
            max_message_size,
            minimum=EVENT_OVERHEAD + 64,
            maximum=MAX_EVENT_BYTES,
        )
        self.create_log_group = as_bool("create_log_group", create_log_group)
        self.create_log_stream = as_bool("create_log_stream", create_log_stream)
        self.log_group_tags = as_tags("log_group_tags", log_group_tags)
        self.log_group_retention_days = self._check_retention(log_group_retention_days)
        self.queue_max_events = as_int("queue_max_events", queue_max_events, minimum=1)
        self.queue_max_bytes = as_int(
            "queue_max_bytes", queue_max_bytes, minimum=self.max_message_size
        )
        self.flush_timeout = as_float("flush_timeout", flush_timeout, minimum=0.0)
        self.handle_signals = as_bool("handle_signals", handle_signals)
        self.region_name = as_optional_str("region_name", region_name)
        self.endpoint_url = as_optional_str("endpoint_url", endpoint_url)
        serializer = as_callable("json_serialize_default", json_serialize_default)
        self.json_serialize_default = serializer or watchtower._json_serialize_default
        self.setFormatter(watchtower.CloudWatchLogFormatter(json_serialize_default=serializer))
        self._fixed_client = boto3_client
        self._session_factory = self._make_session_factory(
            boto3_client=boto3_client,
            session_factory=session_factory,
            role_arn=role_arn,
            role_session_name=role_session_name,
            duration_seconds=duration_seconds,
            external_id=external_id,
            profile_name=_pick_alias(
                "profile_name", profile_name, None, "boto3_profile_name", boto3_profile_name
            ),
        )
        self._body_limit = self.max_message_size - EVENT_OVERHEAD
        fields = {name for _, name, _, _ in string.Formatter().parse(self.log_stream_name) if name}
        self._per_record_stream = bool(fields & _PER_RECORD_FIELDS)
        self._stream_uses_time = "strftime" in fields
        self._stream_uses_thread = "thread_name" in fields
        self._reset_state()
        _live.add(self)
        arrange_shutdown(live_handlers, handle_signals=self.handle_signals)

    # ----------------------------------------------------------------- validation

    @staticmethod
    def _check_template(template: str) -> str:
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
        except ValueError as exc:
            message = f"log_stream_name {template!r} is not a valid template: {exc}"
            raise ConfigurationError(message) from None
        unknown = sorted(set(fields) - _STREAM_FIELDS)
        if unknown or not template:
            message = (
                f"log_stream_name {template!r} uses unknown fields {unknown}; "
                f"known fields: {', '.join(sorted(_STREAM_FIELDS))}"
            )
            raise ConfigurationError(message)
        return template

    @staticmethod
    def _check_retention(value: int | str | None) -> int | None:
        if value is None or value == "":
            return None
        days = as_int("log_group_retention_days", value, minimum=1)
        if days not in RETENTION_DAYS:
            allowed = ", ".join(str(day) for day in sorted(RETENTION_DAYS))
            message = f"log_group_retention_days must be one of {allowed}, not {days}"
            raise ConfigurationError(message)
        return days

    def _make_session_factory(
        self,
        *,
        boto3_client: Any,
        session_factory: Callable[[], boto3.Session] | str | None,
        role_arn: str | None,
        role_session_name: str | None,
        duration_seconds: int | str | None,
        external_id: str | None,
        profile_name: str | None,
    ) -> Callable[[], boto3.Session]:
        factory = as_callable("session_factory", session_factory)
        credential_options = {
            "role_arn": role_arn,
            "role_session_name": role_session_name,
            "duration_seconds": duration_seconds,
            "external_id": external_id,
            "profile_name": profile_name,
            "session_factory": factory,
        }
        given = [key for key, value in credential_options.items() if value not in (None, "")]
        if boto3_client is not None and given:
            message = f"boto3_client excludes {', '.join(given)}: give one source of credentials"
            raise ConfigurationError(message)
        if factory is not None:
            if len(given) > 1:
                others = ", ".join(given[:-1])
                message = f"session_factory excludes {others}: give one source of credentials"
                raise ConfigurationError(message)
            return factory
        # Validated now, so a typo fails at configuration time; built at first delivery.
        return SessionOptions.parse(
            role_arn,
            role_session_name=role_session_name,
            duration_seconds=duration_seconds,
            external_id=external_id,
            region_name=self.region_name,
            profile_name=profile_name,
        ).build

    # ----------------------------------------------------------------- state

    def createLock(self) -> None:
        """Create the handler's lock (logging calls this from ``__init__``)."""
        logging.Handler.createLock(self)

    def _at_fork_reinit(self) -> None:
        # logging calls this in a forked child: the parent's thread, client and queued
        # records stay with the parent, which delivers them; the child starts afresh.
        logging.Handler._at_fork_reinit(self)  # type: ignore[attr-defined]
        self._reset_state()

    def _reset_state(self) -> None:
        # The queue. emit() runs under the handler's lock (logging.Handler.handle takes it),
        # so emit-side counters have one writer; the sender's counters have another. Queue
        # depth and held bytes are differences of the two, and the deque is thread-safe:
        # the common path of emit() takes no other lock.
        self._queue: collections.deque[Event] = collections.deque()
        self._enqueued_seq = 0  # emit: records queued so far
        self._enqueued_bytes = 0  # emit: their bytes, with the 26-byte overhead
        self._oldest_pending = 0.0  # emit: monotonic time the oldest queued record arrived
        self._emit_dropped: collections.Counter[str] = collections.Counter()  # emit
        self._truncated = 0  # emit
        self._drained_seq = 0  # sender: records taken off the queue
        self._drained_bytes = 0  # sender
        self._released_events = 0  # sender: records delivered or dropped after queueing
        self._released_bytes = 0  # sender
        self._acked_seq = 0  # sender, under _cond: everything up to it is handled
        self._flush_target = 0  # flush(), under _cond
        # Rare transitions (start, close, reopen, stop), waits and warnings use _cond.
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()  # tells the sender to look at the queue again
        self._stop_backoff = threading.Event()  # cuts a backoff sleep short at close()
        self._closing_deadline: float | None = None
        self._closed = False
        self._sender: threading.Thread | None = None
        self._overflowing = False
        self._warned: set[str] = set()  # warnings given once per process
        self._failing: set[str] = set()  # delivery failures warned since the last success
        self._counts: collections.Counter[str] = collections.Counter()  # sender, under _cond
        self._dropped: collections.Counter[str] = collections.Counter()  # sender, under _cond
        self._sync_lock = threading.Lock()
        self._destination = Destination(
            self, self._session_factory, self._fixed_client, self._warn_once
        )
        self._fixed_stream: str | None = None
        # Stream names by (logger, thread), and the fields fixed for the process's life:
        # formatting the template for every record cost more than the rest of emit().
        self._stream_cache: dict[object, str] = {}
        self._process_fields: dict[str, object] | None = None

    @property
    def stats(self) -> DeliveryStats:
        """What this handler did with its records in this process, as a snapshot."""
        with self._cond:
            return DeliveryStats(
                delivered=self._counts["delivered"],
                rejected=self._counts["rejected"],
                dropped=dict(self._dropped + self._emit_dropped),
                retried=self._counts["retried"],
                credential_refreshes=self._counts["credential_refreshes"],
                truncated=self._truncated,
                queued=max(0, self._enqueued_seq - self._released_events),
            )

    @property  # type: ignore[override]  # watchtower's attribute, built lazily here
    def cwl_client(self) -> CloudWatchLogsClient:
        """The ``logs`` client, built on first access (which resolves credentials)."""
        return self._destination.client()

    @cwl_client.setter
    def cwl_client(self, client: CloudWatchLogsClient) -> None:
        self._fixed_client = client
        self._destination.use_client(client)

    # ----------------------------------------------------------------- caller's thread

    def handle(self, record: logging.LogRecord) -> Any:
        """Handle ``record`` unless the current thread is delivering logs.

        Records that botocore or urllib3 log while we send are dropped here, before the
        handler's lock is taken, so delivery can neither recurse nor deadlock.
        """
        if getattr(_local, "delivering", False):
            return False
        # logging.Handler.handle, inlined: emit() is on every request's path.
        result: object = self.filter(record)  # bool; a LogRecord from Python 3.12
        if result:
            if isinstance(result, logging.LogRecord):  # Python 3.12: a filter may replace it
                record = result
            with self.lock:  # type: ignore[union-attr]  # createLock() always made one
                self.emit(record)
        return result

    def _stream_for(self, record: logging.LogRecord) -> str:
        if not self._per_record_stream:
            stream = self._fixed_stream
            if stream is None:  # once per process: _reset_state clears it after a fork
                stream = self._fixed_stream = self._format_stream(record)
            return stream
        if self._stream_uses_time:
            return self._format_stream(record)
        # Keyed by logger name alone unless the thread matters: emit() looks that up inline.
        key = (record.name, record.threadName) if self._stream_uses_thread else record.name
        stream = self._stream_cache.get(key)
        if stream is None:
            if len(self._stream_cache) >= _STREAM_CACHE_SIZE:  # many short-lived threads
                self._stream_cache.clear()
            stream = self._stream_cache[key] = self._format_stream(record)
        return stream

    def _format_stream(self, record: logging.LogRecord) -> str:
        fields = self._process_fields
        if fields is None:
            fields = self._process_fields = {
                "machine_name": platform.node(),
                "program_name": sys.argv[0] if sys.argv else "python",
                "process_id": os.getpid(),
            }
        name = self.log_stream_name.format(
            **fields,
            logger_name=record.name,
            thread_name=record.threadName,
            strftime=(
                datetime.fromtimestamp(record.created, timezone.utc)
                if self._stream_uses_time
                else None
            ),
        )
        return name.replace(":", "-").replace("*", "-")[:512] or "-"

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and queue it; never raises into the application.

        Takes constant time: no network, no clock read in the common case. A record that
        cannot be queued (formatting error, empty message, full queue) is counted in
        ``stats.dropped`` with its reason. A record logged after ``close()`` reopens the
        handler.
        """
        try:
            message = (self.formatter or _DEFAULT_FORMATTER).format(record)
            if message.isascii():
                size = len(message)
            else:
                message, size = utf8_size(message)
        except Exception:
            self._drop_one("format_error")
            self.handleError(record)
            return
        try:
            if not message:
                self._drop_one("empty", "an empty message cannot be sent to CloudWatch Logs")
                return
            if size > self._body_limit:
                message, size = truncate(message, size, self._body_limit)
                self._truncated += 1
            stream = (
                self._fixed_stream
                or self._stream_cache.get(record.name)  # keyed by logger name: the default
                or self._stream_for(record)
            )
            event = _new_event(Event, (stream, int(record.created * 1000), message, size))
            if not self.use_queues:
                self._send_now([event])
                return
            # Queue it: the common path takes no lock (see _reset_state).
            cost = size + EVENT_OVERHEAD
            if (
                self._enqueued_seq - self._released_events >= self.queue_max_events
                or self._enqueued_bytes + cost - self._released_bytes > self.queue_max_bytes
            ):
                self._refuse_full()
                return
            queue = self._queue
            was_empty = not queue
            if was_empty:
                self._oldest_pending = time.monotonic()
            queue.append(event)
            self._enqueued_bytes += cost
            self._enqueued_seq += 1
            if self._sender is None or self._closed:
                self._ensure_sender()
            elif (
                was_empty  # the sender sleeps until told: it starts the send_interval timer
                or len(queue) >= self.max_batch_count
                or self._enqueued_bytes - self._drained_bytes >= self.max_batch_size
            ) and not self._wake.is_set():
                self._wake.set()
        except Exception:
            self._drop_one("internal_error")
            self.handleError(record)

    def _warn_once(self, key: str, message: str, *, per_episode: bool = False) -> None:
        """Warn about ``key`` once per process, or once per failure episode.

        An episode ends with the next successful put. Call without ``_cond`` held.
        """
        seen = self._failing if per_episode else self._warned
        with self._cond:
            if key in seen:
                return
            seen.add(key)
        _warn(message)

    def _drop_one(self, reason: str, warning: str | None = None) -> None:
        self._emit_dropped[reason] += 1
        if warning:
            self._warn_once(
                reason,
                f"{warning}; such records are dropped and counted in stats.dropped[{reason!r}]",
            )

    def _refuse_full(self) -> None:
        self._emit_dropped["queue_full"] += 1
        if not self._overflowing:
            self._overflowing = True
            _warn(
                f"the queue of log group {self.log_group_name} is full "
                f"({self.queue_max_events} records or {self.queue_max_bytes} bytes): "
                "records are dropped and counted in stats.dropped['queue_full'] until it drains"
            )

    def _ensure_sender(self) -> None:
        """Reopen after close() and start the sender if none runs (the rare path of emit)."""
        with self._cond:
            if self._closed:
                # Logged to after close(): reopen, as logging.FileHandler does. A second
                # dictConfig (uvicorn applies one) closes every handler, yet loggers it does
                # not name keep theirs: their records must still arrive.
                self._closed = False
                self._closing_deadline = None
                self._stop_backoff = threading.Event()
            started = self._sender is not None or self._start_sender()
            self._wake.set()
        if not started:  # interpreter shutdown: no thread can start, send from here
            batch, drained_seq = self._drain()
            self._send_now(batch)
            self._acknowledge_drain(drained_seq)

    def _start_sender(self) -> bool:
        """Start the sender thread (``_cond`` held); False if no thread can start."""
        sender = threading.Thread(
            target=self._run_sender, name="watchtower-refresh-sender", daemon=True
        )
        try:
            sender.start()
        except RuntimeError:
            return False
        self._sender = sender
        return True

    def _send_now(self, events: list[Event]) -> None:
        """Deliver ``events`` from the caller's thread, waiting at most ``flush_timeout``."""
        with self._sync_lock:
            _local.delivering = True
            try:
                self._deliver(events, deadline=time.monotonic() + self.flush_timeout)
            finally:
                _local.delivering = False

    # ----------------------------------------------------------------- flush and close

    # A superset of logging's flush(): the argument is optional, the result may be ignored.
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every record queued before this call is delivered or dropped.

        Args:
            timeout: Longest wait in seconds; default ``flush_timeout``.

        Returns:
            True if everything queued before the call was handled in time.
        """
        wait = self.flush_timeout if timeout is None else max(0.0, timeout)
        if _holds_logging_lock():
            wait = 0.0  # inside dictConfig: ask the sender to send, it does once released
        target = self._enqueued_seq
        with self._cond:
            if self._sender is None or self._acked_seq >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._wake.set()
            return self._cond.wait_for(lambda: self._acked_seq >= target, wait)

    def close(self) -> None:
        """Deliver what is queued (waiting at most ``flush_timeout`` seconds) and stop.

        Idempotent. Records still undelivered when the time is up are counted as
        ``shutdown`` in ``stats.dropped`` and reported in one warning. logging calls this at
        interpreter exit, so pending records are sent even if the application never does.
        A record logged to the handler after ``close()`` reopens it, as ``FileHandler``
        reopens its file: a reconfiguration that closes handlers loses nothing.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._closing_deadline = time.monotonic() + self.flush_timeout
            sender = self._sender
            self._wake.set()
        if _holds_logging_lock():
            # dictConfig (uvicorn applies one at start-up) closes old handlers while it holds
            # logging's lock, which the sender needs: it delivers the rest and stops on its
            # own once the lock is released. At interpreter exit no lock is held: we wait.
            sender = None
        if sender is not None and sender is not threading.current_thread():
            sender.join(self.flush_timeout + 1.0)
            self._stop_backoff.set()  # cut short a backoff sleep past the deadline
            sender.join(1.0)
        logging.Handler.close(self)

    # ----------------------------------------------------------------- sender thread

    def _seconds_to_wait(self) -> float | None:
        """How long the sender waits before draining: 0 now, inf until told, None to stop."""
        if self._closed:
            return 0.0 if self._queue else None
        if not self._queue:
            return math.inf
        if (
            self._flush_target > self._acked_seq
            or len(self._queue) >= self.max_batch_count
            or self._enqueued_bytes - self._drained_bytes >= self.max_batch_size
        ):
            return 0.0
        return max(0.0, self._oldest_pending + self.send_interval - time.monotonic())

    def _run_sender(self) -> None:
        keep_sigterm_off_this_thread()
        _local.delivering = True
        while True:
            wait = self._seconds_to_wait()
            if wait is None:
                with self._cond:  # decided under the lock that a reopening emit() takes
                    if self._seconds_to_wait() is None:
                        self._sender = None  # closed and drained; a later record restarts
                        self._cond.notify_all()
                        return
                continue
            if wait:
                self._wake.wait(None if wait == math.inf else wait)
                self._wake.clear()
                continue
            batch, drained_seq = self._drain()
            try:
                self._deliver(batch, deadline=None)
            except Exception as exc:  # keep the sender alive whatever happens
                self._give_up(batch, "internal_error", f"internal error while sending: {exc!r}")
            self._acknowledge_drain(drained_seq)

    def _drain(self) -> tuple[list[Event], int]:
        """Take everything queued; return it and the sequence number of its last record."""
        batch: list[Event] = []
        pop = self._queue.popleft
        try:
            while True:
                batch.append(pop())
        except IndexError:
            pass
        self._drained_bytes += sum(event.size for event in batch) + EVENT_OVERHEAD * len(batch)
        self._drained_seq += len(batch)
        return batch, self._drained_seq

    def _acknowledge_drain(self, drained_seq: int) -> None:
        """Record that everything up to ``drained_seq`` is handled, and wake flush()."""
        with self._cond:
            self._acked_seq = max(self._acked_seq, drained_seq)
            held = self._enqueued_seq - self._released_events
            if self._overflowing and held < self.queue_max_events // 2:
                self._overflowing = False
            self._cond.notify_all()

    def _deliver(self, events: list[Event], deadline: float | None) -> None:
        events, too_old, too_new = split_by_age(events, int(time.time() * 1000))
        if too_old or too_new:
            self._reject(too_old, too_new)
        by_stream: dict[str, list[Event]] = {}
        for event in events:
            by_stream.setdefault(event.stream, []).append(event)
        for stream, stream_events in by_stream.items():
            for batch in split_batches(stream_events, self.max_batch_size, self.max_batch_count):
                self._put(stream, batch, deadline)

    def _release(self, batch: list[Event]) -> None:
        """Free the queue space ``batch`` held (called with ``_cond`` held)."""
        if self.use_queues:  # use_queues=False never holds records
            self._released_events += len(batch)
            self._released_bytes += sum(e.size for e in batch) + EVENT_OVERHEAD * len(batch)

    def _give_up(self, batch: list[Event], reason: str, warning: str) -> None:
        with self._cond:
            self._dropped[reason] += len(batch)
            self._release(batch)
        self._warn_once(
            reason,
            f"{warning} ({len(batch)} records dropped, counted in stats.dropped[{reason!r}])",
            per_episode=True,
        )

    def _put(self, stream: str, batch: list[Event], deadline: float | None) -> None:
        attempt = quick = 0
        while True:
            try:
                client = self._destination.client()
                self._destination.prepare(client, stream)
                response = client.put_log_events(
                    logGroupName=self.log_group_name,
                    logStreamName=stream,
                    logEvents=[{"timestamp": e.timestamp, "message": e.message} for e in batch],
                )
            except Exception as exc:
                outcome = classify(exc)
                if outcome is Outcome.REFRESH and not self._destination.refreshable:
                    outcome = Outcome.GIVE_UP
                if outcome is Outcome.CREATE and (
                    quick >= MAX_QUICK_RETRIES
                    or not (self.create_log_group or self.create_log_stream)
                ):
                    outcome = Outcome.GIVE_UP
                if outcome is Outcome.GIVE_UP:
                    reason = error_code(exc) or type(exc).__name__
                    self._give_up(batch, reason, advice(exc, self.log_group_name, stream))
                    return
                if outcome is Outcome.REFRESH:
                    self._destination.discard_client()
                    self._count("credential_refreshes")
                else:
                    self._count("retried")
                if outcome is Outcome.CREATE:
                    self._destination.forget(stream)
                if outcome is not Outcome.BACKOFF and quick < MAX_QUICK_RETRIES:
                    quick += 1
                    continue
                if not self._backoff(attempt, deadline):
                    reason = "shutdown" if self._closed else "timeout"
                    why = advice(exc, self.log_group_name, stream)
                    self._give_up(batch, reason, f"gave up resending: {why}")
                    return
                attempt += 1
                continue
            self._acknowledge(batch, response.get("rejectedLogEventsInfo"))
            return

    def _reject(self, too_old: list[Event], too_new: list[Event]) -> None:
        """Count events outside the service's time window as rejected, without sending them."""
        with self._cond:
            for reason, events in (("too_old", too_old), ("too_new", too_new)):
                if events:
                    self._counts["rejected"] += len(events)
                    self._dropped[reason] += len(events)
                    self._release(events)
        self._warn_once(
            "rejected",
            "CloudWatch Logs refuses events older than 14 days or more than 2 hours ahead: "
            f"{len(too_old) + len(too_new)} were set aside, counted in "
            "stats.dropped['too_old'|'too_new']",
        )

    def _acknowledge(self, batch: list[Event], rejected_info: Any) -> None:
        rejected = count_rejected(rejected_info, len(batch))
        with self._cond:
            self._counts["delivered"] += len(batch) - rejected.total
            self._counts["rejected"] += rejected.total
            for reason, count in rejected._asdict().items():
                if count:
                    self._dropped[reason] += count
            self._failing.clear()  # a success ends the failure episode: the next one warns again
            self._release(batch)
        if rejected.total:
            self._warn_once(
                "rejected",
                f"CloudWatch Logs refused {rejected.total} of {len(batch)} events as more than "
                "2 hours ahead or older than 14 days or the group's retention; counted in "
                "stats.dropped['too_new'|'too_old'|'expired']",
            )

    def _count(self, name: str) -> None:
        with self._cond:
            self._counts[name] += 1

    def _backoff(self, attempt: int, deadline: float | None) -> bool:
        """Sleep with full jitter; False when the deadline (or close's) leaves no time."""
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
        limits = [d for d in (deadline, self._closing_deadline) if d is not None]
        if limits:
            remaining = min(limits) - time.monotonic()
            if remaining <= 0:
                return False
            delay = min(delay, remaining)
        self._stop_backoff.wait(delay)
        return not (self._closed and self._stop_backoff.is_set())
