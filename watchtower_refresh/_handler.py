"""``RefreshingCloudWatchLogHandler``: watchtower's handler, rebuilt around refreshing credentials.

The handler is the thin front of a pipeline. A record goes down once:

1. ``emit()`` (caller's thread) formats the record, sizes it, truncates it if needed (the
   rules are ``_core.sizing``'s), picks its stream and, with ``spool_dir``, writes it to this
   process's spool (through ``_delivery.backlog``'s spool side). On the
   common path it then appends the event to the ledger's queue (``_core.ledger``) under the
   handler's own lock: no other lock, no clock, no network. Any other case (the first record,
   a closed or closing handler, exit, ``use_queues=False``, full caps) goes to the pipeline's
   ``admit_slow``.
2. The pipeline (``_delivery.pipeline``) owns the lifecycle and the sender generations; the
   scheduler (``_delivery.scheduler``) takes records off the queue in batches per stream and
   hands them to workers, which deliver each (``_delivery.outcome`` through
   ``_delivery.deliver``) to the destination (``_aws.destination``: the client and the group
   and stream set-up). ``_wiring`` builds the stream names, destination and pipeline from the
   options, and afresh in a forked child.
3. Each batch is settled once in the ledger: delivered, rejected by the service, or dropped
   with a reason (``_core.reasons``). ``stats`` is a snapshot of the ledger.

The threads, the lifecycle states and the lock order are described in ``docs/design.md``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import watchtower

from ._buffer import Buffer
from ._core.events import EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, Event
from ._core.ledger import DeliveryStats
from ._core.reasons import DropReason
from ._core.sizing import Sizing
from ._formatter import marker_style
from ._process import arrange as arrange_shutdown
from ._process import finalizing, live, register
from ._process import thread_state as _thread_state
from ._redact import install_redaction
from ._report import Reporter
from ._settings import (
    DEFAULT_BUFFER_MAX_BYTES,
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_LOG_GROUP_NAME,
    DEFAULT_LOG_STREAM_NAME,
    DEFAULT_METRICS_NAMESPACE,
    DEFAULT_QUEUE_MAX_BYTES,
    DEFAULT_QUEUE_MAX_EVENTS,
    DEFAULT_SPOOL_MAX_BYTES,
    HandlerOptions,
)
from ._trace import OTEL_TRACE, TraceContext, in_lambda
from ._watchtower_views import WatchtowerViews
from ._wiring import Wiring

__all__ = ["DeliveryStats", "RefreshingCloudWatchLogHandler", "live_handlers"]

# Loggers of the libraries that deliver: their records while we send are never handled.
_DELIVERY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "watchtower_refresh")
_DEFAULT_FORMATTER = logging.Formatter()
_RETURNS_RECORD = sys.version_info >= (3, 12)  # Handler.handle returns the record from 3.12
_modules = sys.modules
# watchtower's words, which its own tests compare for equality.
_EMPTY_MESSAGE = "Received empty message. Empty messages cannot be sent to CloudWatch Logs"


def live_handlers() -> list[RefreshingCloudWatchLogHandler]:
    """Every handler of this class alive in this process."""
    return [h for h in live() if isinstance(h, RefreshingCloudWatchLogHandler)]


class RefreshingCloudWatchLogHandler(WatchtowerViews):
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
            maximum 1,048,576. What becomes of a longer message is ``large_events``'s choice.
        large_events: ``"truncate"`` (the default): a message over ``max_message_size`` is
            cut and ends with ``[truncated: N bytes in all]`` (counted in
            ``stats.truncated``). ``"split"``: it is sent whole, as several events of at most
            ``max_message_size`` bytes each, cut between characters, each beginning with
            ``[wtr-split <id> <part>/<total>] ``; they travel in one put when they fit, all
            with the record's timestamp, and count as one record in ``stats``.
            ``join_parts()`` joins them back when they are read. A record whose parts would
            not fit in ``queue_max_bytes`` is truncated instead.
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
        kms_key_id: ARN of the KMS key to encrypt the group with, when the handler creates
            it (``create_log_group``). The key's policy must let CloudWatch Logs use it
            (``watchtower-refresh policy --document key`` prints the statement).
        log_group_class: Class of the group the handler creates: ``STANDARD``,
            ``INFREQUENT_ACCESS``, ``DELIVERY`` or, with a botocore that knows it,
            ``ESSENTIALS``; checked against the installed botocore's model.
        deletion_protection: Create the group with deletion protection on. Needs a
            botocore whose model has CreateLogGroup's ``deletionProtectionEnabled``.
            An existing group is never changed: if it was created with other values of
            these three, one warning says which.
        entity: The entity sent with every put, tying the logs to a service in
            CloudWatch's "explore related" views: a mapping (or its JSON) with
            ``keyAttributes`` (2 to 4 of ``Type``, ``ResourceType``, ``Identifier``,
            ``Name``, ``Environment``) and optional ``attributes`` (at most 10); or
            ``"auto"``: built once, on the sender's thread, from ECS task metadata, the
            Kubernetes pod's environment, Lambda or EC2 instance metadata, as the CloudWatch
            agent builds it. If the service refuses it, one warning names the error type.
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
        drop_markers: True (the default) writes one event to a stream that lost records
            (a full queue, a refusal, a failed format...), as soon as a put to it succeeds
            again: ``watchtower-refresh: 501 records dropped between 10:42:07.120 and
            10:42:08.004 UTC (queue_full 501)``, or a JSON object with the same fields
            when the formatter is ``LocalTimeFormatter(as_json=True)``. One per episode of
            loss; markers are not records (no ``stats`` counter counts them). False: none.
        trace_context: True (the default) gives each record the ids of the trace it was
            logged in, as attributes ``trace_id``, ``span_id`` and ``xray_trace_id``:
            OpenTelemetry's current span, or in Lambda the X-Ray trace of the invocation;
            empty strings outside a trace. ``LocalTimeFormatter``'s JSON carries the
            non-empty ones. False leaves records alone.
        buffer_at: A level below ERROR (``"DEBUG"``), or None (the default) for none.
            Inside a ``log_buffer()`` scope, records at or below it are held, and shipped,
            in order, only when a record at ERROR or above is logged in the same scope (or
            the scope ends by an exception); otherwise they are let go when it ends and
            counted in ``stats.discarded``. Outside scopes records ship as usual.
        buffer_max_bytes: Most bytes one scope holds for this handler (the messages'
            characters plus 26 per record); the oldest go first. Default 262,144.
        buffer_sample_rate: Fraction of scopes, 0 to 1, whose records are shipped as
            usual instead of held. Default 0.
        metrics_interval: Seconds (at least 1) between two self-metrics events, or None
            (the default, also ``0`` or ``"off"``) for none. Every interval, and once more
            at ``close()``, the sender writes one CloudWatch Embedded Metric Format event
            to the log group, on the stream ``watchtower-refresh-metrics/<host>/<process
            id>``: records delivered and dropped (in all and by reason), puts retried,
            credential refreshes since the last accepted event, the records queued and the
            age in seconds of the oldest. CloudWatch makes metrics of them with no other
            call or permission. These events are not records: they are not in ``stats``.
        metrics_namespace: CloudWatch namespace of those metrics; default
            ``WatchtowerRefresh``.
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
        kms_key_id: str | None = None,
        log_group_class: str | None = None,
        deletion_protection: bool | str = False,
        entity: Mapping[str, Mapping[str, str]] | str | None = None,
        queue_max_events: int | str = DEFAULT_QUEUE_MAX_EVENTS,
        queue_max_bytes: int | str = DEFAULT_QUEUE_MAX_BYTES,
        large_events: str = "truncate",
        flush_timeout: float | str = DEFAULT_FLUSH_TIMEOUT,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | str = DEFAULT_SPOOL_MAX_BYTES,
        spool_fsync: bool | str = False,
        level: int | str = logging.NOTSET,
        handle_signals: bool | str = True,
        drop_markers: bool | str = True,
        trace_context: bool | str = True,
        buffer_at: int | str | None = None,
        buffer_max_bytes: int | str = DEFAULT_BUFFER_MAX_BYTES,
        buffer_sample_rate: float | str = 0.0,
        metrics_interval: float | str | None = None,
        metrics_namespace: str = DEFAULT_METRICS_NAMESPACE,
    ) -> None:
        install_redaction()
        given = dict(locals())  # every argument, as given, for the options to check
        del given["self"], given["level"]
        options = HandlerOptions.parse(given)
        self._show_options(options)
        self._session_factory = options.session_factory
        # Every option is valid: only now does logging learn of the handler (a handler that
        # failed half-way would be flushed by logging at exit). watchtower's __init__ builds
        # a client and calls AWS; only logging's runs here.
        logging.Handler.__init__(self, level)
        self.setFormatter(
            watchtower.CloudWatchLogFormatter(json_serialize_default=options.json_serialize_default)
        )
        self._sizing = Sizing(options)
        self._trace = TraceContext(in_lambda()) if options.trace_context else None
        self._buffer = (
            None
            if options.buffer_at is None
            else Buffer(options.buffer_at, options.buffer_max_bytes, options.buffer_sample_rate)
        )
        self._reporter = Reporter(threading.RLock())
        self._reset_state()
        register(self)
        arrange_shutdown(live_handlers, handle_signals=options.handle_signals)

    # ----------------------------------------------------------------- state

    def held_here(self) -> bool:
        """Whether this thread holds the ledger's lock: a signal handler that interrupted it
        must not wait for a thread that needs that lock."""
        return self._wiring.held_here()

    def _reset_state(self) -> None:
        """Start afresh: a new pipeline (ledger, no sender), a client built at first delivery."""
        self._wiring = wiring = Wiring(
            self.options,
            self._session_factory,
            self.lock,
            self._fixed_client,
            # Looked up at each put: a subclass or a test may replace it on the instance.
            lambda client, stream, batch: self._put(client, stream, batch),
            self._reporter,
            lambda: marker_style(self.formatter),  # the formatter may be replaced any time
        )
        # Read on every record, and by watchtower's views: kept at hand.
        self._streams, self._destination = wiring.streams, wiring.destination
        self._pipeline = wiring.pipeline

    def after_fork_in_child(self) -> None:
        # The parent's threads, client and held records stay with the parent, which
        # delivers them; the child counts only its own records.
        self._reset_state()

    @property
    def stats(self) -> DeliveryStats:
        """What this handler did with its records in this process, as a snapshot."""
        return self._wiring.stats()

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
        pipeline = self._pipeline
        ledger = pipeline.ledger
        if ledger.gate.gated and finalizing():
            # Formatting may crash the interpreter now (3.13.0's datetime does): count the
            # record as shutdown and say so once, unformatted.
            pipeline.refuse_finalizing(1)
            return
        formatter = self.formatter or _DEFAULT_FORMATTER
        sizing = self._sizing
        trace = self._trace
        buffer = self._buffer
        try:
            if trace is not None and (formatter is not trace.plain or OTEL_TRACE in _modules):
                trace.annotate(record, formatter)  # only where there may be something to add
            if buffer is not None and buffer.holds(self, record):
                return  # held in its log_buffer() scope (see _buffer)
            message = formatter.format(record)
        except Exception:
            self._lost(record, DropReason.FORMAT_ERROR)
            self.handleError(record)
            return
        try:
            text: bytes | None = None  # the UTF-8 bytes, when sizing made them
            if message.isascii():
                size = len(message)
                if not 0 < size <= sizing.limit:
                    if not size:
                        pipeline.drop_one(DropReason.EMPTY, _EMPTY_MESSAGE)
                        return
                    message, size = sizing.cut(message, size, None, ledger)
                cost = size + EVENT_OVERHEAD
            else:
                message, size, text = sizing.text(message, ledger)
                cost = abs(size) + EVENT_OVERHEAD
            streams = self._streams
            stream = (
                streams.fixed
                or streams.cache.get(record.name)  # keyed by logger name: the default
                or streams.for_record(record)
            )
            timestamp = int(record.created * 1000)
            spool = pipeline.spool
            event: Event
            if spool.writer is None and not spool.pending:  # memory only
                event = (stream, timestamp, message, size)
            else:  # on disk before emit() returns: the record survives the process's death
                event = spool.write(stream, timestamp, message, size, text)
            gate = ledger.gate
            if (
                ledger.admitted < gate.limit_events
                and ledger.admitted_bytes + cost <= gate.limit_bytes
            ):
                # The fast path: a sender runs, the handler is open and the caps allow. The
                # ledger's admission, inlined (see ``Ledger.admit``): the counters are updated
                # in place, with no call in between that a signal handler (which may log
                # too) could interrupt.
                ledger.admitted += 1
                ledger.admitted_bytes += cost
                ledger.queue.append(event)
                if gate.attention:  # closed, or the sender went idle, since the check
                    pipeline.wake_sender()
                return
            pipeline.admit_slow(event, cost)
        except Exception:
            self._lost(record, DropReason.INTERNAL_ERROR)
            self.handleError(record)

    def _lost(self, record: logging.LogRecord, reason: DropReason) -> None:
        """Count ``record`` as lost on arrival, in its stream's marker if it has one."""
        ledger = self._pipeline.ledger
        place = self._streams.place(record) if ledger.gaps is not None else None
        stream, timestamp = place or (None, 0)
        ledger.drop(reason, stream=stream, timestamp=timestamp)

    def count_discarded(self, count: int) -> None:
        """Count ``count`` records a ``log_buffer()`` scope held and let go."""
        self._pipeline.ledger.count("discarded", count)

    # ----------------------------------------------------------------- flush and close

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
        wait = self.options.flush_timeout if timeout is None else max(0.0, timeout)
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
        self.close_by(time.monotonic() + self.options.flush_timeout)

    def close_by(self, deadline: float) -> None:
        """``close()``, delivering until the monotonic ``deadline`` (shared at exit)."""
        if self._pipeline.close_by(deadline):
            logging.Handler.close(self)  # outside the ledger's lock: it takes logging's

    def issue_warnings(self) -> None:
        """Issue the warnings ``emit()`` put aside."""
        self._reporter.issue_pending()

    def request_flush(self) -> int:
        """Ask the sender to send everything queued now; return what to wait for.

        Returns:
            The admission number up to which everything must be settled.
        """
        return self._pipeline.request_flush()

    def wait_flushed(self, target: int, deadline: float) -> bool:
        """Wait until every record up to ``target`` is settled, or the monotonic ``deadline``."""
        return self._pipeline.wait_flushed(target, deadline)

    @property
    def kept_in_spool(self) -> int:
        """Records this process wrote to its spool and has not acknowledged: a later
        process delivers them (0 without a spool)."""
        return self._pipeline.spool.kept()

    def send_synchronously(self) -> None:
        """From now on, send each record before its logging call returns, as with
        ``use_queues=False``; what is already queued is still sent by the sender."""
        self.use_queues = False
        self._pipeline.send_synchronously()
