"""The handler's side of CloudWatch Logs: its client, and the group and streams it writes to.

The client is built on first use from the session factory (never in a constructor), once
per process, and again after the service says the token expired; its connect and read
timeouts are sized from the handler's ``flush_timeout`` (never below 0.5 s and 1 s), so a
hanging request cannot outlast it. The group (with its retention, tags, KMS key, class and
deletion protection; an existing group's settings are compared, never changed) and each stream
are set up before the first put to them, with the handler's own client; a set-up step that
fails for any reason but a transient one never costs the batch. ``set_up`` does that for
the handler and for ``watchtower-refresh check`` alike; the actions it calls are the rows of
``iam.HANDLER_CALLS``. The entity sent with every put is kept here too: ``entity="auto"``
is built once, on a sender thread.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

from .._process import thread_state as _thread_state
from .credentials import effective_region, non_refreshing_problem, request_timeouts
from .entity import AUTO, ENTITY_TIMEOUT
from .entity import detect as detect_entity
from .failures import Outcome, classify, error_code, setup_advice

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

__all__ = [
    "Destination",
    "GroupSettingsDiffer",
    "Prepared",
    "Refused",
    "SetUpOptions",
    "Settings",
    "set_up",
]


class SetUpOptions(Protocol):
    """The handler options that decide how its group and streams are set up."""

    @property
    def create_log_group(self) -> bool: ...
    @property
    def create_log_stream(self) -> bool: ...
    @property
    def log_group_retention_days(self) -> int | None: ...
    @property
    def log_group_tags(self) -> Mapping[str, str]: ...
    @property
    def kms_key_id(self) -> str | None: ...
    @property
    def log_group_class(self) -> str | None: ...
    @property
    def deletion_protection(self) -> bool: ...


class GroupSettingsDiffer(Exception):
    """The group existed already, with other settings than the handler's (told to ``Refused``).

    Nothing is changed on an existing group: its encryption, class and deletion protection
    stay as they are; the sentence says which differ.
    """


class Settings(SetUpOptions, Protocol):
    """The handler options a destination reads, live, from its handler."""

    @property
    def log_group_name(self) -> str: ...
    @property
    def region_name(self) -> str | None: ...
    @property
    def endpoint_url(self) -> str | None: ...
    @property
    def flush_timeout(self) -> float: ...
    @property
    def entity(self) -> Mapping[str, Mapping[str, str]] | str | None: ...


Refused = Callable[[str, Exception], None]
"""Told of a set-up call that failed for good: its operation's name and what it raised."""


@dataclasses.dataclass
class Prepared:
    """What is set up already, for one handler in one process: the group, and streams by name."""

    group: bool = False
    streams: set[str] = dataclasses.field(default_factory=set)


class _Step(enum.Enum):
    """How a set-up call ended."""

    CREATED = "created"
    EXISTED = "already there"
    DONE = "already there, or refused and reported"
    PENDING = "put off until the next put"


# What the put would meet as well: reported there, once, with advice.
_CLIENT_PROBLEMS = (NoCredentialsError, PartialCredentialsError, NoRegionError)
# seconds: how long a sender thread waits for another one building entity="auto" (which
# makes at most three requests of ENTITY_TIMEOUT each)
_ENTITY_WAIT = 3 * ENTITY_TIMEOUT + 1.0
_LEAST_TIMEOUT = 0.05  # seconds: a request is given at least this long to connect and read


class Destination:
    """One handler's client and set-up state, in one process.

    Args:
        settings: The handler, whose options are read when they are needed.
        session_factory: Builds the session the client comes from.
        fixed_client: A client given by the user: used as is, never rebuilt.
        warn_once: Reports a problem once per key, without raising.
    """

    def __init__(
        self,
        settings: Settings,
        session_factory: Callable[[], boto3.Session],
        fixed_client: CloudWatchLogsClient | None,
        warn_once: Callable[[str, str], None],
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._fixed_client = fixed_client
        self._warn_once = warn_once
        self._lock = threading.Lock()
        self._client = fixed_client
        self._session: boto3.Session | None = None  # None: a given client, not rebuilt
        self._prepared = Prepared()
        self._entity: Mapping[str, Mapping[str, str]] | None = None
        self._entity_started = False
        self._entity_ready = threading.Event()
        self.refreshable = fixed_client is None
        """Whether fresh credentials can be had: False for a given client or static keys."""

    def client(self, within: float | None = None) -> CloudWatchLogsClient:
        """The ``logs`` client, built on first use (which resolves credentials).

        Args:
            within: Seconds left for the request, or None for no limit. When less than the
                ``flush_timeout`` the client's timeouts are sized from, the request gets a
                client of the same session whose timeouts fit in what is left, so that no
                attempt runs past its caller's deadline.
        """
        with self._lock:
            client = self._client
            if client is None:
                built = self._session = self._session_factory()
                problem = non_refreshing_problem(built.get_credentials())
                self.refreshable = problem is None
                if problem:
                    self._warn_once("non_refreshing", problem)
                client = self._client = self._build(built, *self._timeouts)
            session = self._session
        if within is None or session is None or within >= self._settings.flush_timeout:
            return client
        connect = min(self._timeouts[0], max(within / 4, _LEAST_TIMEOUT))
        return self._build(session, connect, max(within - connect, _LEAST_TIMEOUT))

    @property
    def _timeouts(self) -> tuple[float, float]:
        return request_timeouts(self._settings.flush_timeout)

    def _build(self, session: boto3.Session, connect: float, read: float) -> CloudWatchLogsClient:
        client: CloudWatchLogsClient = session.client(
            "logs",
            region_name=effective_region(session, self._settings.region_name),
            endpoint_url=self._settings.endpoint_url,
            config=Config(
                # Retries are ours: they refresh credentials and never drop a batch.
                retries={"total_max_attempts": 1},
                # Our requests are valid by construction (non-empty strings within the
                # limits, integer timestamps, checked names), and the service refuses
                # anything else; validating 10,000 events took half of a put's CPU.
                parameter_validation=False,
                # A put that hangs ends within flush_timeout, so close() can count it.
                connect_timeout=connect,
                read_timeout=read,
                user_agent_extra="watchtower-refresh",
            ),
        )
        return client

    def use_client(self, client: CloudWatchLogsClient) -> None:
        """Use ``client`` from now on, as it is."""
        with self._lock:
            self._fixed_client = self._client = client
            self._session = None
            self.refreshable = False

    def discard_client(self) -> None:
        """Drop the client so that the next put builds one with fresh credentials."""
        with self._lock:
            if self._client is not self._fixed_client:
                self._client = None

    def forget(self, stream: str) -> None:
        """The service lost the group or ``stream``: set them up again before the next put."""
        self._prepared.group = False
        self._prepared.streams.discard(stream)

    def prepare(self, client: CloudWatchLogsClient, stream: str) -> None:
        """Create the group (retention, tags) and ``stream`` if this process has not yet.

        A step put off for want of credentials is tried again before the next put.
        """
        set_up(
            client,
            self._settings.log_group_name,
            stream,
            self._settings,
            self._prepared,
            self._warn,
        )

    def entity(self) -> Mapping[str, Mapping[str, str]] | None:
        """The entity to send with every put, or None.

        ``entity="auto"`` is built here once (``entity.detect``, each metadata request
        bounded by ``ENTITY_TIMEOUT``) by the first sender thread that asks; the others
        wait for it, so every put carries it. A put from the caller's thread
        (``use_queues=False``) never waits: it starts the build on a thread of its own and
        goes without the entity until that is done.
        """
        wanted = self._settings.entity
        if wanted != AUTO:
            return wanted if not isinstance(wanted, str) else None
        if self._entity_ready.is_set():
            return self._entity
        with self._lock:
            first = not self._entity_started
            self._entity_started = True
        if _thread_state.deferred is not None:  # the caller's thread: never wait
            if first:
                threading.Thread(
                    target=self._detect_entity, name="watchtower-refresh-entity", daemon=True
                ).start()
            return self._entity
        if first:
            self._detect_entity()
        else:
            self._entity_ready.wait(_ENTITY_WAIT)
        return self._entity

    def _detect_entity(self) -> None:
        try:
            self._entity = detect_entity()
        finally:
            self._entity_ready.set()

    def entity_answer(self, response: object) -> None:
        """Warn once if the service refused the entity (the events may still be accepted)."""
        if not isinstance(response, Mapping):
            return
        info = response.get("rejectedEntityInfo")
        if not isinstance(info, Mapping):
            return
        kind = str(info.get("errorType") or "unknown")
        self._warn_once(
            f"entity:{kind}",
            f"CloudWatch Logs refused the entity sent with the events of log group "
            f"{self._settings.log_group_name} ({kind}); the events themselves are kept. "
            "Check the handler's entity option against the service's rules",
        )

    def _warn(self, action: str, exc: Exception) -> None:
        if isinstance(exc, GroupSettingsDiffer):
            self._warn_once("setup:settings_differ", str(exc))
            return
        code = error_code(exc)
        self._warn_once(
            f"setup:{action}:{code or type(exc).__name__}",
            setup_advice(exc, action, self._settings.log_group_name),
        )


def set_up(
    client: CloudWatchLogsClient,
    group: str,
    stream: str,
    options: SetUpOptions,
    prepared: Prepared,
    refused: Refused,
) -> None:
    """Set up ``group`` and ``stream`` as the handler's ``options`` say, unless ``prepared``.

    The group first: created if ``create_log_group`` (with its tags; an existing one is
    tagged through its ARN), then its retention; then the stream if ``create_log_stream``.
    ``prepared`` records what is done. "Already exists" is success. Transient errors
    (throttling, 5xx, connection errors, an expired token) propagate, so the put is
    retried. Missing credentials or region put the step off without a word: they are the
    client's problem, not the step's, and the put meets them too. Anything else (a refusal,
    an invalid parameter, a failed side call, any exception at all) goes to ``refused``
    and set-up goes on: the group may already be set up by someone who holds the
    permission, and the put itself decides what becomes of the batch.

    Args:
        client: The ``logs`` client to call.
        group: The log group's name.
        stream: The log stream's name.
        options: The handler's options (``create_log_group``, ``create_log_stream``,
            ``log_group_retention_days``, ``log_group_tags``).
        prepared: What is set up already; updated here.
        refused: Told of each step that failed for good; may raise to stop set-up.
    """
    if not prepared.group:
        ready = _set_up_group(client, group, options, refused)
        if ready is None:
            return  # the put meets the same problem and reports it
        prepared.group = ready
    if stream not in prepared.streams:
        if options.create_log_stream:
            opened = _step(
                "CreateLogStream",
                lambda: client.create_log_stream(logGroupName=group, logStreamName=stream),
                refused,
            )
            if opened is _Step.PENDING:
                return
        prepared.streams.add(stream)


def _set_up_group(
    client: CloudWatchLogsClient, group: str, options: SetUpOptions, refused: Refused
) -> bool | None:
    """Create, tag and keep ``group`` as ``options`` say.

    Returns:
        True when done, False when a step was put off (tried again before the next put),
        None when creating the group was put off (nothing more before the put).
    """
    pending = False
    tags = dict(options.log_group_tags)
    if options.create_log_group:
        wanted = _wanted_settings(options)
        parameters: dict[str, Any] = dict(wanted)
        if tags:
            parameters["tags"] = tags

        created = _step(
            "CreateLogGroup",
            lambda: client.create_log_group(logGroupName=group, **parameters),
            refused,
        )
        if created is _Step.PENDING:
            return None
        if wanted and created is _Step.EXISTED:
            compared = _step(
                "DescribeLogGroups",
                lambda: _compare_settings(client, group, wanted),
                refused,
            )
            pending = compared is _Step.PENDING
        if tags and created is not _Step.CREATED:  # created ones are tagged at birth
            tagged = _step(
                "TagResource",
                lambda: client.tag_resource(resourceArn=_group_arn(client, group), tags=tags),
                refused,
            )
            pending = pending or tagged is _Step.PENDING
    retention = options.log_group_retention_days
    if retention is not None:
        kept = _step(
            "PutRetentionPolicy",
            lambda: client.put_retention_policy(logGroupName=group, retentionInDays=retention),
            refused,
        )
        pending = pending or kept is _Step.PENDING
    return not pending


def _wanted_settings(options: SetUpOptions) -> dict[str, Any]:
    """The CreateLogGroup parameters of the handler's group settings, those set only."""
    wanted: dict[str, Any] = {}
    if options.kms_key_id:
        wanted["kmsKeyId"] = options.kms_key_id
    if options.log_group_class:
        wanted["logGroupClass"] = options.log_group_class
    if options.deletion_protection:
        wanted["deletionProtectionEnabled"] = True
    return wanted


_SETTING_NAMES = {
    "kmsKeyId": "kms_key_id",
    "logGroupClass": "log_group_class",
    "deletionProtectionEnabled": "deletion_protection",
}
_SETTING_DEFAULTS: dict[str, Any] = {
    "kmsKeyId": "none",
    "logGroupClass": "STANDARD",
    "deletionProtectionEnabled": False,
}


def _compare_settings(client: CloudWatchLogsClient, group: str, wanted: Mapping[str, Any]) -> None:
    """Raise ``GroupSettingsDiffer`` if the existing ``group`` has other settings than wanted."""
    found = _describe(client, group)
    differ = [
        f"{_SETTING_NAMES[key]} is {found.get(key, _SETTING_DEFAULTS[key])!s}, not {value!s}"
        for key, value in wanted.items()
        if found.get(key, _SETTING_DEFAULTS[key]) != value
    ]
    if differ:
        message = (
            f"log group {group} exists already with other settings: {'; '.join(differ)}. "
            "The handler changes no existing group (its encryption least of all): change "
            "the group, or the handler's options"
        )
        raise GroupSettingsDiffer(message)


def _describe(client: CloudWatchLogsClient, group: str) -> Mapping[str, Any]:
    """The group's description, as ``client`` sees it (DescribeLogGroups by prefix)."""
    paginator = client.get_paginator("describe_log_groups")
    for page in paginator.paginate(logGroupNamePrefix=group):
        for found in page.get("logGroups", []):
            if found.get("logGroupName") == group:
                return found
    message = f"DescribeLogGroups does not list log group {group}"
    raise LookupError(message)


def _group_arn(client: CloudWatchLogsClient, group: str) -> str:
    """The group's ARN, as ``client`` sees it (TagResource takes no name).

    Asking this client, rather than STS through some session, keeps the handler's
    credentials, account and partition: a given ``boto3_client`` has no session, and the
    default one may have no credentials at all.
    """
    found = _describe(client, group)
    arn = found.get("logGroupArn") or found.get("arn", "").removesuffix(":*")
    if not arn:
        message = f"DescribeLogGroups gives no ARN for log group {group}"
        raise LookupError(message)
    return str(arn)


def _step(action: str, call: Callable[[], object], refused: Refused) -> _Step:
    """Run one set-up call and say how it ended (see ``set_up`` for the rules)."""
    try:
        call()
    except Exception as exc:
        code = error_code(exc)
        if code == "ResourceAlreadyExistsException":
            return _Step.EXISTED
        if code == "OperationAbortedException":
            return _Step.DONE
        if classify(exc) in (Outcome.BACKOFF, Outcome.REFRESH):
            raise
        if isinstance(exc, _CLIENT_PROBLEMS):
            return _Step.PENDING
        refused(action, exc)
        return _Step.DONE
    return _Step.CREATED
