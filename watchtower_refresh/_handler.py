"""``RefreshingCloudWatchLogHandler``: watchtower's handler, rebuilt around refreshing credentials.

How a record travels:

1. ``emit()`` (caller's thread) formats the record, sizes it, truncates it if needed and
   admits it to the handler's ledger (``_ledger``): one bounded in-memory queue whose caps
   and counters the ledger owns. The common path takes no lock beyond the handler's own and
   touches neither the clock nor the network.
2. The sender (``_sender``: one scheduler thread and a few workers) takes records off the
   queue when a batch is full, ``send_interval`` has passed, or ``flush()``/``close()``
   asks, splits them into batches per stream and delivers each (``_delivery``) through the
   destination (``_destination``: the client, built on first use, and the group and streams).
3. Each batch is settled once in the ledger: delivered, rejected by the service, or dropped
   with a reason. ``stats`` is a snapshot of the ledger.

With ``spool_dir`` (``_spool``), ``emit()`` also writes each record to this process's spool
files before it returns, and the event carries the record's spool id; the id is acknowledged
before its batch is settled, unless it was dropped for a reason a later process may do better
on. Past the in-memory caps, records wait on disk and the sender refills the queue from there
in order (``refill``). A replay thread per sender adopts what dead processes left and
delivers it one batch at a time through the same ledger (``replay_once``).

The handler's lifecycle, one rule per state (``_State``):

- ``NEW``: built, nothing sent yet. The first record starts a sender: ``OPEN``.
- ``OPEN``: records are queued and sent in the background.
- ``CLOSING``: ``close()`` delivers what is held until ``flush_timeout`` has passed; records
  logged meanwhile are delivered too.
- ``CLOSED``: the sender has stopped; what could not be delivered was counted as
  ``shutdown`` and reported in one line on stderr. A record logged now reopens the handler.
- A forked child starts ``NEW``, with its own ledger and client; the parent keeps and
  delivers what it held.
- Interpreter exit (``_process``): every handler is closed before ``logging.shutdown``;
  records logged afterwards are sent from the caller's thread within a bounded budget, and
  once the interpreter is finalizing they are counted as ``shutdown``, with one line on stderr.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import boto3
import watchtower

from ._batching import (
    ESTIMATE_PER_CHAR,
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MESSAGE,
    SIZE,
    TIMESTAMP,
    Event,
    size_exactly,
    split_batches,
    split_by_age,
    truncate,
    utf8_size,
)
from ._compat import (
    handler_at_fork_reinit,
    holds_lock,
    holds_logging_lock,
    watchtower_json_default,
)
from ._credentials import SessionOptions
from ._delivery import deliver_batch
from ._destination import Destination
from ._exceptions import ConfigurationError, WatchtowerRefreshWarning
from ._ledger import Claim, DeliveryStats, Ledger, Part
from ._options import (
    LOG_GROUP_PATTERN,
    LOG_GROUP_RULE,
    as_bool,
    as_callable,
    as_float,
    as_int,
    as_optional_str,
    as_retention_days,
    as_tags,
    check_pattern,
)
from ._process import arrange as arrange_shutdown
from ._process import (
    check_sigterm_after_fork,
    delivering,
    exit_deadline,
    exiting,
    finalizing,
    live,
    mark_delivery_thread,
    register,
    report,
    summarizing,
)
from ._process import thread_state as _thread_state
from ._redact import install_redaction, redact
from ._sender import Sender
from ._spool import DEFAULT_MAX_BYTES as DEFAULT_SPOOL_MAX_BYTES
from ._spool import DEFAULT_SEGMENT_BYTES, Spool, SpooledRecord, adopt
from ._streams import StreamNames, check_template
from ._wire import put_events

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["DeliveryStats", "RefreshingCloudWatchLogHandler", "live_handlers"]

# Where the spool id of a spooled record sits in its Event (a fifth element).
_SPOOL_ID = 4

DEFAULT_LOG_GROUP_NAME = "watchtower"
DEFAULT_LOG_STREAM_NAME = watchtower.DEFAULT_LOG_STREAM_NAME
DEFAULT_QUEUE_MAX_EVENTS = 100_000
DEFAULT_QUEUE_MAX_BYTES = 64 * 1024 * 1024
MAX_IN_FLIGHT = 8
"""Most batches a handler sends at once, each to a different stream."""
_RESTART_SPACING = 0.05  # seconds between two senders close() starts, and between its looks
_STOP_GRACE = 1.0  # seconds close() gives a stopped sender past its deadline to settle
REPLAY_INTERVAL = 30.0
"""Seconds between looks for records that dead processes left in the spool."""
MIN_SPOOL_BYTES = 64 * 1024
# Reasons a record is dropped that a later process may do better on: its spool copy stays.
_REPLAYABLE = frozenset(
    ("shutdown", "timeout", "queue_full", "ExpiredTokenException", "ExpiredToken", "RequestExpired")
)
# Loggers of the libraries that deliver: their records while we send are never handled.
_DELIVERY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "watchtower_refresh")
_DEFAULT_FORMATTER = logging.Formatter()
# watchtower's own: a subclass or a test that replaces it gets each batch, as on watchtower.
_WATCHTOWER_SUBMIT = watchtower.CloudWatchLogHandler._submit_batch
_EVENT_FIELDS = (TIMESTAMP, MESSAGE)  # where put_events finds them in an Event
_RETURNS_RECORD = sys.version_info >= (3, 12)  # Handler.handle returns the record from 3.12


def live_handlers() -> list[RefreshingCloudWatchLogHandler]:
    """Every handler of this class alive in this process."""
    return [h for h in live() if isinstance(h, RefreshingCloudWatchLogHandler)]


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


def _warnings_go_to_logging() -> bool:
    """Whether ``logging.captureWarnings(True)`` routes warnings through logging now."""
    return getattr(warnings.showwarning, "__module__", None) == "logging"


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
            ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`` and ``AWS_ENDPOINT_URL`` are honoured
            without it (botocore reads those; not ``AWS_ENDPOINT_URL_LOGS``).
        session_factory: A callable returning a ``boto3.Session``, or its dotted path
            (``package.module:function``). Called on the sender thread at first delivery
            and again after an expired-token error. Excludes the credential options above.
        queue_max_events: Most records held in memory (queued or in flight); more are
            dropped and counted as ``queue_full``. Default 100,000.
        queue_max_bytes: Most message bytes held in memory, counting 26 bytes per record.
            Default 64 MiB.
        flush_timeout: Longest time, in seconds, that ``close()`` (and so interpreter exit)
            waits for delivery, and that a record waits in ``use_queues=False`` mode.
            Each Logs and STS request's connect and read timeouts are sized to fit in it
            (never below 0.5 s and 1 s). Default 10.
        spool_dir: An existing directory for the disk spool, or None (the default) for
            memory only. Each record is written there before ``emit()`` returns and removed
            once the service has accepted or refused it, so records survive the process
            being killed (SIGKILL, the OOM killer, ``os._exit``) and an outage longer than
            the in-memory caps: what a dead process left is delivered by the next handler
            of the same log group started on the same directory, oldest first, with the
            original timestamps and stream names. The directory is checked at the first
            record: if it is missing or not writable, one warning says so and records are
            kept in memory only.
        spool_max_bytes: Most bytes the whole spool directory may hold (every process and
            log group sharing it), at least 65,536; default 512 MiB. When it is full a
            record is not written to disk: it is still queued in memory if the caps allow
            (and lost only if the process dies before it is sent), otherwise dropped and
            counted as ``spool_full``; one warning says so.
        spool_fsync: ``fsync`` each record, so that it survives a power cut too, not only
            the process's death. Much slower. Default False.
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
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | str = DEFAULT_SPOOL_MAX_BYTES,
        spool_fsync: bool | str = False,
        level: int | str = logging.NOTSET,
        handle_signals: bool | str = True,
    ) -> None:
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
        self.log_stream_name = check_template(str(template))
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
        self.log_group_retention_days = as_retention_days(
            "log_group_retention_days", log_group_retention_days
        )
        self.queue_max_events = as_int("queue_max_events", queue_max_events, minimum=1)
        self.queue_max_bytes = as_int(
            "queue_max_bytes", queue_max_bytes, minimum=self.max_message_size
        )
        self.flush_timeout = as_float("flush_timeout", flush_timeout, minimum=0.0)
        self.handle_signals = as_bool("handle_signals", handle_signals)
        self.spool_dir = as_optional_str(
            "spool_dir", os.fspath(spool_dir) if isinstance(spool_dir, os.PathLike) else spool_dir
        )
        self.spool_max_bytes = as_int("spool_max_bytes", spool_max_bytes, minimum=MIN_SPOOL_BYTES)
        self.spool_fsync = as_bool("spool_fsync", spool_fsync)
        self.region_name = as_optional_str("region_name", region_name)
        self.endpoint_url = as_optional_str("endpoint_url", endpoint_url)
        serializer = as_callable("json_serialize_default", json_serialize_default)
        self.json_serialize_default = serializer or watchtower_json_default()
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
        # Every option is valid: only now does logging learn of the handler (a handler that
        # failed half-way would be flushed by logging at exit). watchtower's __init__ builds
        # a client and calls AWS; only logging's runs here.
        logging.Handler.__init__(self, level)
        self.setFormatter(watchtower.CloudWatchLogFormatter(json_serialize_default=serializer))
        self._body_limit = self.max_message_size - EVENT_OVERHEAD
        self._warned: set[str] = set()  # warnings given once per process
        self._reset_state()
        register(self)
        arrange_shutdown(live_handlers, handle_signals=self.handle_signals)

    # ----------------------------------------------------------------- validation

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
            sts_timeout=self.flush_timeout,
        ).build

    # ----------------------------------------------------------------- state

    def createLock(self) -> None:
        """Create the handler's lock (logging calls this from ``__init__``).

        watchtower's version also sets up its per-stream queues; this handler has its own.
        """
        logging.Handler.createLock(self)

    def _at_fork_reinit(self) -> None:
        # logging calls this in a forked child; watchtower's version resets watchtower's
        # state. Ours is reset by _process's own after-fork hook.
        handler_at_fork_reinit(self)

    def held_here(self) -> bool:
        """Whether this thread holds the ledger's lock: a signal handler that interrupted it
        must not wait for a thread that needs that lock."""
        return holds_lock(self._ledger.lock)

    def _reset_state(self) -> None:
        """Start afresh: a new ledger, no sender, a client built at first delivery."""
        self._ledger = Ledger(self.queue_max_events, self.queue_max_bytes)
        self._state = _State.NEW
        self._sender: Sender | None = None
        self._closing_deadline: float | None = None
        self._failing: set[str] = set()  # delivery failures warned since the last success
        self._pending_warnings: list[str] = []  # from emit(), issued by a delivery thread
        self._exit_reported = False
        self._streams = StreamNames(self.log_stream_name)
        self._destination = Destination(
            self, self._session_factory, self._fixed_client, self._warn_once
        )
        # The spool writer is opened at the first record of each process (a forked child
        # opens its own); _spool_pending says it is still to be opened.
        self._spool: Spool | None = None
        self._spool_pending = self.spool_dir is not None
        self._spool_full_seen = 0
        self._replayer: _Replayer | None = None
        # The first spool id of the records kept on disk only, beyond the caps (None: none).
        self._backlog_from: int | None = None

    def after_fork_in_child(self) -> None:
        # The parent's threads, client and held records stay with the parent, which
        # delivers them; the child counts only its own records.
        self._reset_state()

    @property
    def stats(self) -> DeliveryStats:
        """What this handler did with its records in this process, as a snapshot."""
        return self._ledger.snapshot(truncated=self._ledger.truncated)

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
        """Handle ``record``, unless the current thread is delivering logs.

        Records that botocore, urllib3 or this package log while we send are not handled,
        so delivery can neither recurse nor deadlock. Any other record logged on a thread
        that is sending is handled: right after the put for a ``use_queues=False`` put (a
        signal handler that interrupted it), at once on the handler's own threads (a
        ``session_factory`` that logs, say).
        """
        if _thread_state.delivering:
            return self._handle_while_delivering(record)
        # logging.Handler.handle, inlined: emit() is on every request's path.
        if self.filters:
            result: object = self.filter(record)  # bool; a LogRecord from Python 3.12
            if not result:
                return result
            if isinstance(result, logging.LogRecord):  # Python 3.12: a filter may replace it
                record = result
        with self.lock:  # type: ignore[union-attr]  # createLock() always made one
            self.emit(record)
        return record if _RETURNS_RECORD else True

    def _handle_while_delivering(self, record: logging.LogRecord) -> Any:
        if record.name.startswith(_DELIVERY_LOGGERS):
            return False
        deferred = _thread_state.deferred
        if deferred is not None:  # a synchronous put is under way on this thread
            deferred.append((self, record))
            return True
        before = _thread_state.delivering  # one of our threads: queue it like any record
        _thread_state.delivering = False
        try:
            return self.handle(record)
        finally:
            _thread_state.delivering = before

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and queue it; never raises into the application.

        Takes constant time: no network, no clock read, no lock beyond the handler's own in
        the common case (with ``spool_dir``, one ``write`` to this process's spool file). A
        record that cannot be queued (formatting error, empty message, full queue) is
        counted in ``stats.dropped`` with its reason. A record logged after
        ``close()`` reopens the handler. With ``use_queues=False`` the record is sent from
        the caller's thread, which waits at most ``flush_timeout`` seconds.
        """
        try:
            message = (self.formatter or _DEFAULT_FORMATTER).format(record)
        except Exception:
            self._ledger.drop("format_error")
            self.handleError(record)
            return
        try:
            text: bytes | None = None  # the UTF-8 bytes, when sizing made them
            if message.isascii():
                size = len(message)
                if not 0 < size <= self._body_limit:
                    if not size:
                        self._drop_one(
                            "empty",
                            "Received empty message. Empty messages cannot be sent to "
                            "CloudWatch Logs",
                        )
                        return
                    message, size = truncate(message, size, self._body_limit)
                    self._ledger.truncated += 1
                cost = size + EVENT_OVERHEAD
            else:
                message, size, text = self._size_text(message)
                cost = abs(size) + EVENT_OVERHEAD
            streams = self._streams
            stream = (
                streams.fixed
                or streams.cache.get(record.name)  # keyed by logger name: the default
                or streams.for_record(record)
            )
            timestamp = int(record.created * 1000)
            spool = self._spool
            if spool is None and self._spool_pending:
                spool = self._open_spool()
            event: Event
            if spool is None:
                event = (stream, timestamp, message, size)
            else:
                # On disk before emit() returns: the record survives the process's death.
                spool_id = spool.append(stream, timestamp, message, text)
                if spool_id is None:
                    self._spool_refused(spool)
                    event = (stream, timestamp, message, size)
                else:
                    event = (stream, timestamp, message, size, spool_id)
            ledger = self._ledger
            if (
                ledger.admitted < ledger.limit_events
                and ledger.admitted_bytes + cost <= ledger.limit_bytes
            ):
                # The fast path: a sender runs, the handler is open and the caps allow. The
                # counters are updated in place, with no call in between that a signal
                # handler (which may log too) could interrupt.
                ledger.admitted += 1
                ledger.admitted_bytes += cost
                ledger.queue.append(event)
                if ledger.attention:  # closed, or the sender went idle, since the check
                    self._wake_sender()
                return
            self._emit_slow(event, cost)
        except Exception:
            self._ledger.drop("internal_error")
            self.handleError(record)

    def _size_text(self, message: str) -> tuple[str, int, bytes | None]:
        """Size non-ASCII ``message``: ``(message, size, its UTF-8 bytes or None)``.

        Encoding 1 KB of such text costs the caller as much as a third of a
        ``StreamHandler``'s whole ``emit()``. Without a spool (which writes the bytes), the
        size is therefore an upper bound, charged to the caps until the sender sizes it
        exactly, and given negative (see ``Event``) when it is within the size limit.
        Otherwise: lone surrogates escaped, so the record is still sent, and the message cut
        to ``max_message_size``.
        """
        bound = len(message) * ESTIMATE_PER_CHAR
        if self.spool_dir is None and bound <= self._body_limit:
            self._ledger.estimated = True
            return message, -bound, None
        text: bytes | None
        try:
            text = message.encode()
        except UnicodeEncodeError:  # lone surrogates: escaped, so the record is sent
            message, size = utf8_size(message)
            text = None
        else:
            size = len(text)
        if size > self._body_limit:
            message, size = truncate(message, size, self._body_limit)
            text = None
            self._ledger.truncated += 1
        return message, size, text

    def _wake_sender(self) -> None:
        ledger = self._ledger
        ledger.woken()
        sender = self._sender
        if sender is not None:
            sender.wake.set()
        if ledger.gated:
            self._emit_raced_close()

    def _emit_raced_close(self) -> None:
        """A record went into the queue as close() stopped the sender: see that it is sent."""
        with self._ledger.lock:
            sender = self._sender
            if sender is not None and sender.reusable:
                return
            if self._state is _State.CLOSING:
                self._closing_sender()
            else:
                self._open()

    def _closing_sender(self) -> Sender | None:
        """The sender that delivers for close(): a new one if the last has stopped.

        Records logged while close() runs are delivered too (ledger lock held).
        """
        sender = self._sender
        if sender is not None and sender.reusable:
            return sender
        if finalizing():
            return None  # no thread can start
        return self._start_sender(draining=True)

    def _start_sender(self, *, draining: bool) -> Sender | None:
        """Start a new sender and make it this handler's (ledger lock held); None if no
        thread can start (interpreter shutdown: 3.12 refuses threads in atexit hooks too)."""
        sender = Sender(self, self._ledger, MAX_IN_FLIGHT)
        sender.draining = draining
        if not sender.start():
            return None
        self._sender = sender
        return sender

    def _emit_slow(self, event: Event, cost: int) -> None:
        """Admit ``event`` when the fast path cannot: start, reopen, exit, sync or full."""
        if event[SIZE] < 0:  # an estimate: its exact size matters from here on
            sized, _, cost = size_exactly([event])
            event = sized[0]
        if not self.use_queues:
            self._send_now([event])
            return
        ledger = self._ledger
        with ledger.lock:
            if exiting():
                if self._running() and not ledger.spilling and ledger.has_room(cost):
                    # Only the sender's wake-up kept it off the fast path: queue it.
                    self._queue_and_wake(event, cost)
                    return
            else:
                sender = self._sender
                if self._state is _State.CLOSING:
                    # close() delivers it, or counts it as shutdown once its time is up.
                    self._admit_or_refuse(event, cost)
                    sender = self._closing_sender()
                    if sender is not None:
                        sender.wake.set()
                    return
                if not self._running():
                    self._open()
                if self._state is _State.OPEN and self._sender is not None:
                    self._queue_and_wake(event, cost)
                    return
        # Exiting, or no thread can start.
        self._send_now([event], exit_path=True)

    def _running(self) -> bool:
        """Whether the handler is open with a sender that takes records (ledger lock held)."""
        sender = self._sender
        return self._state is _State.OPEN and sender is not None and sender.reusable

    def _queue_and_wake(self, event: Event, cost: int) -> None:
        """Queue ``event`` for the running sender and wake it (ledger lock held)."""
        self._admit_or_refuse(event, cost)
        self._ledger.woken()  # once is enough: the sender arms the next wake-up
        sender = self._sender
        if sender is not None:
            sender.wake.set()

    def _admit_or_refuse(self, event: Event, cost: int) -> None:
        """Queue ``event`` under the caps (ledger lock held), keep it on disk only, or count
        it as ``queue_full``."""
        ledger = self._ledger
        if len(event) > _SPOOL_ID:
            if self._backlog_from is None and not ledger.has_room(cost):
                # Full: this record and the next wait in the spool, refilled in order.
                self._backlog_from = event[-1]
                ledger.spill()
            if self._backlog_from is not None:
                ledger.on_disk += 1
                return
        if ledger.has_room(cost) or (ledger.size_queued() and ledger.has_room(cost)):
            ledger.admitted += 1
            ledger.admitted_bytes += cost
            ledger.queue.append(event)
            return
        if len(event) <= _SPOOL_ID and self._spool is not None and self._spool_full_seen:
            # Neither on disk (the spool is full) nor in memory: this one is lost.
            ledger.drop("spool_full")
            return
        ledger.drop("queue_full")  # a spooled record stays on disk for a later process
        if not ledger.overflowing:
            ledger.overflowing = True
            self._warn_soon(
                f"the queue of log group {self.log_group_name} is full "
                f"({self.queue_max_events} records or {self.queue_max_bytes} bytes): "
                "records are dropped and counted in stats.dropped['queue_full'] until it drains"
            )

    def _open_spool(self) -> Spool | None:
        """Open this process's spool writer at its first record; None means memory only."""
        self._spool_pending = False
        directory = self.spool_dir
        if directory is None:
            return None
        # Segments small enough that a small spool still has several.
        segment = max(4096, min(DEFAULT_SEGMENT_BYTES, self.spool_max_bytes // 8))
        self._spool = Spool.open(  # warns once and returns None if it cannot be used
            directory,
            self.log_group_name,
            max_bytes=self.spool_max_bytes,
            segment_bytes=segment,
            fsync=self.spool_fsync,
            warn=self._warn_soon,  # from emit(), under the handler's lock
        )
        return self._spool

    def _spool_refused(self, spool: Spool) -> None:
        """Note a record the spool did not take: full (warned once), or an I/O failure
        (which the spool warns about itself)."""
        full = spool.stats.full
        if full == self._spool_full_seen:
            self._spool_full_seen = 0  # an I/O failure, not a full spool
            return
        self._spool_full_seen = full
        self._warn_soon(  # emit() holds the handler's lock
            f"the spool in {self.spool_dir} holds spool_max_bytes={self.spool_max_bytes} "
            "bytes: new records are kept in memory only, and dropped and counted in "
            "stats.dropped['spool_full'] when the memory queue is full too",
            key="spool_full",
        )

    def _close_spool(self) -> None:
        """Close the spool writer once nothing it wrote is held or in flight (ledger lock
        held); the next record opens a new one. Its unacknowledged records stay for an
        adopter."""
        spool = self._spool
        ledger = self._ledger
        if spool is None or ledger.held or ledger.in_flight or self._backlog_from is not None:
            return  # a put abandoned by close() may still be answered: it acks here
        # emit() holds the handler's lock from writing a record to the spool until it is
        # queued: a writer closed in between would never see that record acknowledged,
        # and the next process would deliver it again. The writer then stays open, for a
        # later close().
        lock = self.lock
        if lock is None or holds_lock(lock) or not lock.acquire(blocking=False):
            return  # in emit() on this thread (a signal handler closes us) or on another
        try:
            spool.close()
            self._spool = None
            self._spool_pending = self.spool_dir is not None
        finally:
            lock.release()

    def _open(self) -> None:
        """Start a sender, or keep the one that is still draining (ledger lock held)."""
        check_sigterm_after_fork()  # a forked child's SIGTERM may have been reset
        sender: Sender | None = self._sender
        if sender is not None and sender.reusable:
            sender.draining = False  # a dictConfig closed us without waiting: carry on
            sender = None  # and so does its replayer
        else:
            sender = self._start_sender(draining=False)
            if sender is None:
                return  # the caller sends from its own thread
        self._state = _State.OPEN
        self._closing_deadline = None
        if self.use_queues:  # else every record is sent from the caller's thread: slow path
            self._ledger.open_gate()
        if sender is not None and self.spool_dir is not None:
            replayer = _Replayer(self, sender)  # after OPEN: a pass stops once it is not
            if replayer.start():
                self._replayer = replayer

    def _send_now(self, events: list[Event], *, exit_path: bool = False) -> None:
        """Deliver ``events`` from the caller's thread and settle them.

        Waits at most ``flush_timeout`` seconds, or what is left of the exit budget. During
        finalization nothing is sent: the events are counted as ``shutdown``.
        """
        ledger = self._ledger
        if finalizing():
            ledger.drop("shutdown", len(events))
            if not self._exit_reported:
                self._exit_reported = True
                report(
                    f"records logged to log group {self.log_group_name} while the interpreter "
                    "is finalizing cannot be sent; they are counted in stats.dropped['shutdown']"
                )
            return
        claim = ledger.claim_now(events)
        deadline = time.monotonic() + self.flush_timeout
        if exit_path or exiting():
            deadline = min(deadline, exit_deadline())
        deferred: list[tuple[logging.Handler, logging.LogRecord]] = []
        before = _thread_state.deferred
        _thread_state.deferred = deferred
        try:
            with delivering():
                self._deliver_claim(claim, events, None, deadline=deadline)
        finally:
            _thread_state.deferred = before
            ledger.settle_rest(claim, "internal_error")
        for handler, record in deferred:  # logged by a signal handler while we were sending
            handler.handle(record)

    # ----------------------------------------------------------------- flush and close

    def request_flush(self) -> int:
        """Ask the sender to send everything queued now; return what to wait for.

        Returns:
            The admission number up to which everything must be settled.
        """
        ledger = self._ledger
        if self.spool_dir is not None and self._state is _State.NEW and not exiting():
            with ledger.lock:  # start delivering, so what dead processes left is replayed
                if self._state is _State.NEW:
                    self._open()
        target = ledger.admitted
        sender = self._sender
        if sender is not None and target > ledger.drained:
            sender.flush_target = max(sender.flush_target, target)
            sender.wake.set()
        return target

    def wait_flushed(self, target: int, deadline: float) -> bool:
        """Wait until every record up to ``target`` is settled, or the monotonic ``deadline``."""
        if holds_logging_lock():
            deadline = 0.0  # inside dictConfig: the sender needs that lock; it sends once free
        replayer = self._replayer
        if replayer is not None:  # a replay pass settles what it claims before it is idle
            replayer.idle.wait(max(0.0, deadline - time.monotonic()))
        ledger = self._ledger
        while self._backlog_from is not None:  # records on disk: admitted as the queue drains
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            target = max(target, self.request_flush())
            with ledger.cond:
                ledger.cond.wait(min(remaining, 0.05))
        if ledger.admitted > target:  # what the backlog admitted meanwhile
            target = self.request_flush()
        sender = self._sender
        if sender is None or not sender.alive:
            return self._ledger.settled_through >= target
        return self._ledger.wait_settled(target, max(0.0, deadline - time.monotonic()))

    # A superset of logging's flush(): the argument is optional, the result may be ignored.
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every record queued before this call is delivered or dropped.

        Args:
            timeout: Longest wait in seconds; default ``flush_timeout``. ``0`` asks the
                sender to send now and returns at once.

        Returns:
            True if everything queued before the call was handled in time.
        """
        self.issue_warnings()
        wait = self.flush_timeout if timeout is None else max(0.0, timeout)
        target = self.request_flush()
        return self.wait_flushed(target, time.monotonic() + wait)

    def close(self) -> None:
        """Deliver what is held (waiting at most ``flush_timeout`` seconds) and stop.

        Idempotent, and safe to call from several threads at once: a second call waits for
        the first. Whatever is still undelivered when the time is up, queued or in flight,
        whatever the sender is doing, is counted as ``shutdown`` in ``stats.dropped`` and
        reported in one line on stderr. logging calls this at interpreter exit, so pending
        records are sent even if the application never does. A record logged to the handler
        after ``close()`` reopens it, as ``FileHandler`` reopens its file: a reconfiguration
        that closes handlers loses nothing.
        """
        self.close_by(time.monotonic() + self.flush_timeout)

    def close_by(self, deadline: float) -> None:
        """``close()``, delivering until the monotonic ``deadline`` (shared at exit)."""
        ledger = self._ledger
        with ledger.lock:
            state = self._state
            if state is _State.CLOSING:
                lost = self._join_close(deadline)
            else:
                done = state in (_State.NEW, _State.CLOSED) and not (ledger.held or ledger.on_disk)
                if done:
                    self._state = _State.CLOSED
                    self._close_spool()
                else:
                    sender = self._sender
                    if sender is None or not sender.reusable:
                        self._open()  # records were left behind: a sender to deliver them
                        sender = self._sender if self._state is _State.OPEN else None
                    self._state = _State.CLOSING
                    self._closing_deadline = deadline
                    ledger.close_gate()
                    if sender is not None:
                        sender.draining = True
                        sender.wake.set()
        if state is _State.CLOSING:
            self._report_lost(lost)
            return
        if done:
            logging.Handler.close(self)  # outside the ledger's lock: it takes logging's
            return
        try:
            if holds_logging_lock():
                # dictConfig (uvicorn applies one at start-up) closes old handlers while it
                # holds logging's lock, which the sender needs: it delivers the rest and
                # stops on its own once the lock is released. At interpreter exit no lock
                # is held: we wait.
                with ledger.lock:
                    self._state = _State.CLOSED
                    ledger.cond.notify_all()
                logging.Handler.close(self)
                return
            self._finish_close(sender)
        except BaseException:
            # Interrupted (a signal handler raised, say): leave the handler as a dictConfig
            # close does, its sender still delivering, so that a later close() waits for
            # what is held and counts what it cannot deliver; CLOSING would make every later
            # close() return at once.
            with ledger.lock:
                if self._state is _State.CLOSING:
                    self._state = _State.CLOSED
                    ledger.cond.notify_all()
            raise

    def _join_close(self, deadline: float) -> int:
        """Wait for the close() under way (ledger lock held); return what it had to give up.

        Waits until the earlier of the two deadlines: a process that ends sooner (close_all
        at exit or on SIGTERM) makes that close() give up sooner too, and one that cannot
        run meanwhile (on the thread our signal handler interrupted) is settled from here.
        """
        ledger = self._ledger
        closing = self._closing_deadline or deadline
        if deadline < closing:
            self._closing_deadline = closing = deadline
            ledger.cond.notify_all()
        ledger.cond.wait_for(
            lambda: self._state is not _State.CLOSING,
            max(0.0, closing + _STOP_GRACE - time.monotonic()),
        )
        return self._settle_close(None) if self._state is _State.CLOSING else 0

    def _finish_close(self, sender: Sender | None) -> None:
        ledger = self._ledger
        restart_at = 0.0
        no_thread = False

        def deadline() -> float:  # a close_by() with an earlier one may bring it forward
            return self._closing_deadline or time.monotonic()

        def grace() -> float:
            # Up to _STOP_GRACE past the deadline, for a backoff just cut short or a put
            # timing out to settle; one still unanswered then is counted as shutdown, and
            # moves to what became of it if its answer comes later.
            return min(_STOP_GRACE, max(0.0, deadline() + _STOP_GRACE - time.monotonic()))

        def settled_or_stopped() -> bool:
            nonlocal restart_at, no_thread
            if (ledger.held == 0 and not ledger.on_disk) or self._state is not _State.CLOSING:
                return True  # settled, or by a close_by() that could wait no longer
            current = self._sender
            if current is not None and current.reusable:
                return False  # it delivers; each settlement wakes us
            if not (ledger.queue or (ledger.on_disk and ledger.has_room(EVENT_OVERHEAD))):
                # Held in flight only (a synchronous put, a replayed batch, a record that
                # emit() is still appending), or on disk behind a full queue: a settlement
                # wakes us. A sender would find nothing to take and stop at once.
                return False
            # Logged meanwhile and the last sender has stopped: a fresh one delivers them,
            # one at a time at most every _RESTART_SPACING seconds.
            now = time.monotonic()
            if now < restart_at:
                return False
            restart_at = now + _RESTART_SPACING
            if self._closing_sender() is None:
                no_thread = True  # no thread can start: count what is held now
                return True
            return False

        while True:
            # Wait even if ``sender`` has already stopped: it may have emptied the queue just
            # as other threads logged more, which a fresh sender delivers.
            with ledger.cond:
                while not settled_or_stopped():
                    remaining = deadline() - time.monotonic()
                    if remaining <= 0:
                        break
                    ledger.cond.wait(min(remaining, _RESTART_SPACING))
                # Settled by a close_by() meanwhile, the handler may have reopened: leave
                # its sender alone.
                sender = (self._sender or sender) if self._state is _State.CLOSING else None
            if sender is not None:
                sender.stop.set()  # cut a backoff wait short: the time is up
                sender.wake.set()
                sender.join(grace())
                replayer = self._replayer
                if replayer is not None:  # let it release what it adopted, for the next adopter
                    replayer.join(grace())
            with ledger.lock:
                if self._state is not _State.CLOSING:
                    lost = 0  # a close_by() that could not wait longer settled it
                elif (
                    (ledger.held or ledger.on_disk)
                    and not no_thread
                    and (time.monotonic() < deadline())
                ):
                    # Logged while we stopped the sender, with time left: wait for them as
                    # for the others.
                    continue
                else:
                    lost = self._settle_close(sender)
            break
        self._report_lost(lost)
        self.issue_warnings()
        logging.Handler.close(self)

    def _settle_close(self, sender: Sender | None) -> int:
        """End ``CLOSING`` (ledger lock held): count what is still held as ``shutdown``,
        stop the senders and return how many records that was."""
        ledger = self._ledger
        lost = 0
        if ledger.held or ledger.on_disk:
            for stopping in {sender, self._sender}:
                if stopping is not None:
                    stopping.abandon()
            lost = ledger.abandon("shutdown")
        if self._backlog_from is not None:  # counted as shutdown; it stays on disk
            self._backlog_from = None
            ledger.unspill()
        self._state = _State.CLOSED
        if not lost:
            # With records abandoned in flight, the writer stays open for their acks.
            self._close_spool()
        ledger.cond.notify_all()
        return lost

    def _report_lost(self, lost: int) -> None:
        if lost and not summarizing():
            report(
                f"{lost} records for log group {self.log_group_name} could not be delivered "
                f"within flush_timeout={self.flush_timeout:g}s of close(); they are counted "
                "in stats.dropped['shutdown']"
            )

    # ----------------------------------------------------------------- delivery

    def _deliver_claim(
        self,
        claim: Claim,
        events: list[Event],
        stop: threading.Event | None,
        *,
        deadline: float | None,
    ) -> None:
        """Deliver ``events`` of ``claim`` from this thread: by stream, in batches."""
        now_ms = int(time.time() * 1000)
        for stream, stream_events in _by_stream(events):
            sendable, too_old, too_new = split_by_age(stream_events, now_ms)
            if too_old or too_new:
                self.reject_by_age(claim, too_old, too_new)
            for batch in split_batches(sendable, self.max_batch_size, self.max_batch_count):
                self._deliver(stream, claim.part(batch), stop, deadline=deadline)

    def deliver(self, stream: str, part: Part, stop: threading.Event) -> None:
        """Deliver one batch and settle it; the sender's workers call this."""
        self._deliver(stream, part, stop, deadline=None)

    def _deliver(
        self,
        stream: str,
        part: Part,
        stop: threading.Event | None,
        *,
        deadline: float | None,
    ) -> None:
        def limit() -> float | None:
            closing = self._closing_deadline
            if closing is None:
                return deadline
            return closing if deadline is None else min(deadline, closing)

        result = deliver_batch(
            self._destination,
            self._put,
            group=self.log_group_name,
            stream=stream,
            batch=part.events,
            can_create=self.create_log_group or self.create_log_stream,
            count=self._ledger.count,
            deadline=limit,
            stop=stop or threading.Event(),
            closing=lambda: self._state is not _State.OPEN and self._closing_deadline is not None,
        )
        rejected = result.rejected
        batch = part.events
        acker = part.claim.acker
        # Everything that follows from the outcome happens before the part is settled: a
        # flush() that returns once it is settled sees the spool acknowledged, the warning
        # issued and the replayed count, and close() never shuts a writer still owed an ack.
        if result.reason not in _REPLAYABLE:
            self._acknowledge(batch, acker)
        if acker is not None and result.delivered:
            self._ledger.count("replayed", result.delivered)
        if result.reason is None:
            with self._ledger.lock:
                self._failing.clear()  # a success ends the episode: the next one warns again
        elif result.reason == "shutdown" and summarizing():
            pass  # the process is ending: its one line on stderr counts these too
        else:
            self._warn_once(
                result.reason,
                f"{result.warning} ({len(batch)} records dropped, counted in "
                f"stats.dropped[{result.reason!r}])",
                per_episode=True,
            )
        if rejected.total:
            self._warn_once(
                "rejected",
                f"CloudWatch Logs refused {rejected.total} of {len(batch)} events as more than "
                "2 hours ahead or older than 14 days or the group's retention; counted in "
                "stats.dropped['too_new'|'too_old'|'expired']",
            )
        self._ledger.settle(
            part,
            delivered=result.delivered,
            rejected=rejected._asdict(),
            reason=result.reason,
        )

    def _put(self, client: CloudWatchLogsClient, stream: str, batch: Sequence[Event]) -> Any:
        submit: Callable[..., Any] = self._submit_batch
        if getattr(submit, "__func__", submit) is not _WATCHTOWER_SUBMIT:
            # Overridden or patched: watchtower's hook gets the batch, in watchtower's shape,
            # and owns its delivery; what it returns without raising counts as delivered.
            submit([{"timestamp": e[1], "message": e[2]} for e in batch], stream)
            return None
        if client is self._fixed_client:  # a user's client, maybe stubbed: the ordinary call
            return client.put_log_events(
                logGroupName=self.log_group_name,
                logStreamName=stream,
                logEvents=[{"timestamp": e[1], "message": e[2]} for e in batch],
            )
        return put_events(client, self.log_group_name, stream, batch, fields=_EVENT_FIELDS)

    # ----------------------------------------------------------------- watchtower's attributes

    @property
    def queues(self) -> dict[str, list[dict[str, Any]]]:  # type: ignore[override]
        """Records waiting to be sent, by stream, as watchtower's batch dicts (a copy).

        watchtower keeps one ``queue.Queue`` per stream; here one queue holds every stream's
        records, and this is a snapshot of it. Records already handed to a worker are not
        in it.
        """
        waiting: dict[str, list[dict[str, Any]]] = {}
        events, _, _ = size_exactly(list(self._ledger.queue))  # as they will be sent
        for event in events:
            waiting.setdefault(event[0], []).append({"timestamp": event[1], "message": event[2]})
        return waiting

    @property
    def sequence_tokens(self) -> dict[str, str | None]:  # type: ignore[override]
        """Always empty: CloudWatch Logs has ignored sequence tokens since 2023."""
        return {}

    @property
    def threads(self) -> list[threading.Thread]:  # type: ignore[override]
        """The threads delivering for this handler now (a copy)."""
        sender = self._sender
        return sender.threads() if sender is not None else []

    @property
    def shutting_down(self) -> bool:  # type: ignore[override]
        """True from ``close()`` until a record reopens the handler."""
        return self._state in (_State.CLOSING, _State.CLOSED)

    def reject_by_age(self, claim: Claim, too_old: list[Event], too_new: list[Event]) -> None:
        """Settle events outside the service's time window as rejected, without sending them."""
        self._warn_once(  # before settling, as in _deliver
            "rejected",
            "CloudWatch Logs refuses events older than 14 days or more than 2 hours ahead: "
            f"{len(too_old) + len(too_new)} were set aside, counted in "
            "stats.dropped['too_old'|'too_new']",
        )
        for reason, events in (("too_old", too_old), ("too_new", too_new)):
            if events:
                self._acknowledge(events, claim.acker)
                self._ledger.settle(claim.part(events), rejected={reason: len(events)})

    def settle_failed(self, part: Part | None, exc: BaseException) -> None:
        """Settle ``part`` as ``internal_error`` after an unexpected exception, and say so."""
        self._warn_once(  # before settling: a flush() that returns has seen the warning
            "internal_error",
            f"internal error while sending to log group {self.log_group_name}: {exc!r}; "
            "the records are counted in stats.dropped['internal_error']",
            per_episode=True,
        )
        if part is not None:
            self._ledger.settle(part, reason="internal_error")

    # ----------------------------------------------------------------- the spool

    def refill(self) -> None:
        """Admit records kept on disk beyond the caps, oldest first, as far as the caps
        allow; back to the fast path once none is left. The sender calls this."""
        start = self._backlog_from
        spool = self._spool
        if start is None or spool is None:
            return
        ledger = self._ledger
        room = ledger.max_events - ledger.held
        room_bytes = ledger.max_bytes - (ledger.admitted_bytes - ledger.released_bytes)
        if room <= 0 or room_bytes <= 0:
            return
        limits = {"max_records": min(room, 1000), "max_bytes": max(1, min(room_bytes, 1 << 20))}
        records = spool.backlog(start, **limits)  # read without holding up emit()
        with self.lock:  # type: ignore[union-attr]  # admissions are made under it
            if self._backlog_from != start:
                return  # closed meanwhile
            if not records:
                # emit() cannot append while we hold its lock: empty now means caught up.
                records = spool.backlog(start, **limits)
            with ledger.lock:
                if self._backlog_from != start:
                    # close() counted them as shutdown meanwhile (it takes the ledger's lock
                    # only): queueing them now would count them twice.
                    return
                if not records:
                    self._backlog_from = None
                    unreadable, ledger.on_disk = ledger.on_disk, 0
                    if unreadable:  # damaged on disk under us (counted in spool stats too)
                        ledger.drop("spool_error", unreadable)
                    ledger.unspill()
                    return
                for record in records:
                    message, size = utf8_size(record.message)
                    cost = size + EVENT_OVERHEAD
                    if not ledger.has_room(cost):
                        break
                    ledger.admitted += 1
                    ledger.admitted_bytes += cost
                    ledger.queue.append(
                        (record.stream, record.timestamp_ms, message, size, record.id)
                    )
                    ledger.on_disk = max(0, ledger.on_disk - 1)
                    start = record.id + 1
                self._backlog_from = start

    def _acknowledge(
        self, events: Sequence[Event], acker: Callable[[list[int]], None] | None
    ) -> None:
        """Remove settled records from the spool: the replayed batch's or our own writer's."""
        if acker is None and self._spool is None:
            return  # memory only: no event carries a spool id worth acknowledging
        ids = [event[-1] for event in events if len(event) > _SPOOL_ID]  # the spool id
        if not ids:
            return
        if acker is None:
            spool = self._spool
            if spool is None:
                return
            acker = spool.ack
        acker(ids)

    def replay_once(self, stop: threading.Event) -> None:
        """Adopt what dead processes of this log group left in the spool and deliver it.

        Oldest first, one batch at a time (so memory holds one batch of it), with the
        original timestamps and stream names. Each record is settled in ``stats`` like one
        given to ``emit()`` and counted in ``replayed`` once delivered; records that cannot
        be delivered now stay in the spool for a later pass or process.
        """
        ledger = self._ledger
        with adopt(
            self.spool_dir or "",
            self.log_group_name,
            batch_records=self.max_batch_count,
            batch_bytes=self.max_batch_size,
        ) as adoption:
            corrupt = 0
            try:
                for batch in adoption:
                    if adoption.stats.corrupt > corrupt:
                        ledger.count("corrupt", adoption.stats.corrupt - corrupt)
                        corrupt = adoption.stats.corrupt
                    if self._state is not _State.OPEN or stop.is_set():
                        return  # closing: the rest stays claimed by nobody once we return
                    self._replay_batch(batch.records, batch.ack, stop)
            finally:
                if adoption.stats.corrupt > corrupt:
                    ledger.count("corrupt", adoption.stats.corrupt - corrupt)

    def _replay_batch(
        self,
        records: Sequence[SpooledRecord],
        ack: Callable[[list[int]], None],
        stop: threading.Event,
    ) -> None:
        events: list[Event] = []
        for record in records:
            message, size = utf8_size(record.message)
            if size > self._body_limit:
                message, size = truncate(message, size, self._body_limit)
            events.append((record.stream, record.timestamp_ms, message, size, record.id))
        with self.lock:  # type: ignore[union-attr]  # admissions are made under it
            claim = self._ledger.claim_now(events)
        claim.acker = ack
        try:
            self._deliver_claim(claim, events, stop, deadline=None)
        finally:
            self._ledger.settle_rest(claim, "internal_error")

    # ----------------------------------------------------------------- warnings

    def sender_stopped(self, sender: Sender) -> None:
        """``sender`` has stopped (ledger lock held): later records take the slow path."""
        if self._sender is sender:
            self._ledger.close_gate()

    def _warn_soon(self, message: str, key: str | None = None) -> None:
        """Warn from ``emit()``, or soon after from a delivery thread or ``flush()``.

        ``emit()`` runs under the handler's lock; a warning captured into logging
        (``logging.captureWarnings``, which Django turns on) needs logging's lock, which
        ``dictConfig`` holds while it waits for the handler's: a deadlock. Such warnings
        wait for a thread that holds neither.
        """
        if key is not None:
            with self._ledger.lock:
                if key in self._warned:
                    return
                self._warned.add(key)
        if not _warnings_go_to_logging():
            _warn(message)  # nothing in it takes logging's lock: say it now
            return
        self._pending_warnings.append(message)
        sender = self._sender
        if sender is not None and sender.alive:
            sender.wake.set()
        elif not self.use_queues:
            self.issue_warnings()

    def issue_warnings(self) -> None:
        """Issue the warnings ``emit()`` put aside."""
        pending = self._pending_warnings
        while pending:
            try:
                message = pending.pop(0)
            except IndexError:
                return
            _warn(message)

    def _warn_once(self, key: str, message: str, *, per_episode: bool = False) -> None:
        """Warn about ``key`` once per process, or once per failure episode.

        An episode ends with the next successful put.
        """
        with self._ledger.lock:
            seen = self._failing if per_episode else self._warned
            if key in seen:
                return
            seen.add(key)
        _warn(message)

    def _drop_one(self, reason: str, warning: str) -> None:
        self._ledger.drop(reason)
        self._warn_soon(
            f"{warning}; such records are dropped and counted in stats.dropped[{reason!r}]",
            key=reason,
        )

    @property
    def kept_in_spool(self) -> int:
        """Records this process wrote to its spool and has not acknowledged: a later
        process delivers them (0 without a spool)."""
        spool = self._spool
        return 0 if spool is None else spool.stats.appended - spool.stats.acked

    def send_synchronously(self) -> None:
        """From now on, send each record before its logging call returns, as with
        ``use_queues=False``; what is already queued is still sent by the sender."""
        self.use_queues = False
        self._ledger.close_gate()  # every later record takes emit()'s slow path


def _by_stream(events: list[Event]) -> list[tuple[str, list[Event]]]:
    by_stream: dict[str, list[Event]] = {}
    for event in events:
        by_stream.setdefault(event[0], []).append(event)
    return list(by_stream.items())


class _Replayer:
    """One sender generation's replay thread: a pass at start, then every REPLAY_INTERVAL."""

    def __init__(self, handler: RefreshingCloudWatchLogHandler, sender: Sender) -> None:
        self._handler = handler
        self._sender = sender
        self.idle = threading.Event()
        """Clear while a pass runs or is due; ``flush()`` waits for it."""
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        thread = threading.Thread(target=self._run, name="watchtower-refresh-replay", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self.idle.set()
            return False
        self._thread = thread
        return True

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the thread to end (its sender has stopped)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        mark_delivery_thread()
        sender = self._sender
        try:
            while not sender.stop.is_set() and not sender.finished:
                self.idle.clear()
                try:
                    self._handler.replay_once(sender.stop)
                except Exception as exc:  # keep the application's logging going
                    self._handler.settle_failed(None, exc)
                finally:
                    self.idle.set()
                sender.stop.wait(REPLAY_INTERVAL)
        finally:
            self.idle.set()
