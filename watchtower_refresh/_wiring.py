"""One handler's delivery parts in one process, built from its parsed options.

A handler delivers through three parts that belong to the process it runs in: the stream
names it has worked out (``_streams``), the destination (``_aws``: the client, the group and
stream set-up, the entity) and the pipeline (``_delivery``: the ledger, the sender, the
spool side). ``Wiring`` builds them from the options when the handler is made, and afresh in
a forked child, whose parent keeps its threads, client and held records and delivers them.
It also answers what the handler is asked of them beyond a record's way in: the ``stats``
snapshot, and whether this thread holds the lock that delivery needs. A record itself never
comes here: the handler hands the pipeline events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import boto3

from ._aws import Destination
from ._compat import holds_lock
from ._core.events import Event
from ._core.ledger import DeliveryStats
from ._core.markers import Style
from ._delivery.pipeline import Pipeline
from ._report import Reporter
from ._settings import HandlerOptions
from ._streams import StreamNames

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = ["Wiring"]


class Wiring:
    """One handler's stream names, destination and pipeline in this process.

    Args:
        options: The handler's options.
        session_factory: Builds the session the client comes from (at first delivery).
        lock: The handler's lock, under which every admission is made.
        fixed_client: A ready ``logs`` client given by the user, or None.
        put: Sends one batch to one stream (the handler's, so that watchtower's
            ``_submit_batch`` hook applies).
        reporter: The handler's reporter, which outlives a fork.
        marker_style: How the handler's formatter writes records now, so that a drop
            marker reads like them.
    """

    def __init__(
        self,
        options: HandlerOptions,
        session_factory: Callable[[], boto3.Session],
        lock: threading.RLock | None,
        fixed_client: CloudWatchLogsClient | None,
        put: Callable[[CloudWatchLogsClient, str, Sequence[Event]], Any],
        reporter: Reporter,
        marker_style: Callable[[], Style],
    ) -> None:
        self.streams = StreamNames(options.log_stream_name)
        self.destination = Destination(options, session_factory, fixed_client, reporter.once)
        self.pipeline = Pipeline(options, lock, self.destination, put, reporter, marker_style)

    def stats(self) -> DeliveryStats:
        """What the handler did with its records in this process, as a snapshot."""
        return self.pipeline.ledger.snapshot()

    def held_here(self) -> bool:
        """Whether this thread holds the ledger's lock (a signal handler interrupted it)."""
        return holds_lock(self.pipeline.ledger.lock)
