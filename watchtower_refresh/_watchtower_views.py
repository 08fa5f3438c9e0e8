"""What code written against ``watchtower.CloudWatchLogHandler`` reads, sets and overrides.

The handler (``_handler``) keeps its records in a pipeline of its own, with its own queue,
client and threads. watchtower's attributes (the options, ``queues``, ``threads``,
``cwl_client``, ``shutting_down``...) and its override point, ``_submit_batch``, are answered
here from that pipeline, so that code written for watchtower keeps working unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import watchtower

from ._aws import Destination, put_events
from ._compat import handler_at_fork_reinit, overridden_submit_batch
from ._core.events import Event, size_exactly
from ._delivery.pipeline import Pipeline, State
from ._settings import HandlerOptions

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["WatchtowerViews"]

# watchtower's attributes, copied from the options for code written against watchtower.
_VIEWS = (
    "log_group_name",
    "log_stream_name",
    "use_queues",
    "send_interval",
    "max_batch_size",
    "max_batch_count",
    "max_message_size",
    "create_log_group",
    "create_log_stream",
    "log_group_tags",
    "log_group_retention_days",
    "queue_max_events",
    "queue_max_bytes",
    "flush_timeout",
    "handle_signals",
    "spool_dir",
    "spool_max_bytes",
    "spool_fsync",
    "region_name",
    "endpoint_url",
)
_EVENT_FIELDS = (1, 2)  # where put_events finds the timestamp and the message in an Event


class WatchtowerViews(watchtower.CloudWatchLogHandler):
    """watchtower's attributes and its ``_submit_batch`` hook, over the handler's pipeline."""

    options: HandlerOptions
    """Every option, parsed once; what the handler and its pipeline read."""
    # Views of ``options`` that watchtower does not have (watchtower's own are set alike).
    flush_timeout: float
    handle_signals: bool
    spool_dir: str | None
    spool_max_bytes: int
    spool_fsync: bool
    region_name: str | None
    endpoint_url: str | None
    create_log_group: bool
    log_group_tags: Mapping[str, str]
    queue_max_events: int
    queue_max_bytes: int
    # Set by the handler.
    _pipeline: Pipeline
    _destination: Destination
    _fixed_client: CloudWatchLogsClient | None

    def _show_options(self, options: HandlerOptions) -> None:
        """Set watchtower's attributes as views of ``options`` (read them, do not set them)."""
        self.options = options
        for name in _VIEWS:
            setattr(self, name, getattr(options, name))
        self.json_serialize_default = options.serializer
        self._fixed_client = options.boto3_client

    def createLock(self) -> None:
        """Create the handler's lock (logging calls this from ``__init__``).

        watchtower's version also sets up its per-stream queues; this handler has its own.
        """
        logging.Handler.createLock(self)

    def _at_fork_reinit(self) -> None:
        # logging calls this in a forked child; watchtower's version resets watchtower's
        # state. Ours is reset by _process's own after-fork hook.
        handler_at_fork_reinit(self)

    @property  # type: ignore[override]  # watchtower's attribute, built lazily here
    def cwl_client(self) -> CloudWatchLogsClient:
        """The ``logs`` client, built on first access (which resolves credentials)."""
        return self._destination.client()

    @cwl_client.setter
    def cwl_client(self, client: CloudWatchLogsClient) -> None:
        self._fixed_client = client
        self._destination.use_client(client)

    @property
    def queues(self) -> dict[str, list[dict[str, Any]]]:  # type: ignore[override]
        """Records waiting to be sent, by stream, as watchtower's batch dicts (a copy).

        watchtower keeps one ``queue.Queue`` per stream; here one queue holds every stream's
        records, and this is a snapshot of it. Records already handed to a worker are not
        in it.
        """
        waiting: dict[str, list[dict[str, Any]]] = {}
        events, _, _ = size_exactly(list(self._pipeline.ledger.queue))  # as they will be sent
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
        sender = self._pipeline.sender
        return sender.threads() if sender is not None else []

    @property
    def shutting_down(self) -> bool:  # type: ignore[override]
        """True from ``close()`` until a record reopens the handler."""
        return self._pipeline.state in (State.CLOSING, State.CLOSED)

    def _put(self, client: CloudWatchLogsClient, stream: str, batch: Sequence[Event]) -> Any:
        """Send ``batch`` to ``stream``: through watchtower's hook if it is overridden."""
        submit = overridden_submit_batch(self)
        if submit is not None:
            # Overridden or patched: watchtower's hook gets the batch, in watchtower's shape,
            # and owns its delivery; what it returns without raising counts as delivered.
            submit([{"timestamp": e[1], "message": e[2]} for e in batch], stream)
            return None
        destination = self._destination
        entity = destination.entity()
        if client is self._fixed_client:  # a user's client, maybe stubbed: the ordinary call
            extra: dict[str, Any] = {"entity": entity} if entity else {}
            response = client.put_log_events(
                logGroupName=self.options.log_group_name,
                logStreamName=stream,
                logEvents=[{"timestamp": e[1], "message": e[2]} for e in batch],
                **extra,
            )
        else:
            response = put_events(
                client,
                self.options.log_group_name,
                stream,
                batch,
                fields=_EVENT_FIELDS,
                entity=entity,
            )
        if entity:
            destination.entity_answer(response)
        return response
