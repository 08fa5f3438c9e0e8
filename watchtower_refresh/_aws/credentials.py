"""Sessions whose credentials refresh themselves.

``refreshable_session`` returns a ``boto3.Session`` in one of three modes:

* **assumed role** (``role_arn``): a ``CredentialProvider`` registered on the session's own
  credential resolver calls STS AssumeRole from source credentials (the default chain, a
  ``source_profile`` or a ``base_session``). The expiry comes from the response's
  ``Expiration``; the refresh windows are sized from the credential's lifetime.
* **profile** (``profile_name``): botocore's own providers for that profile (``role_arn`` +
  ``source_profile``, SSO, ``credential_process``), which refresh themselves.
* **default chain**: environment, web identity, container role (ECS, EKS Pod Identity),
  instance role (EC2), all refreshed by botocore.

No network I/O happens here: STS is first called when a client resolves its credentials.

Every session built here shares botocore's data loader (``new_session``). A loader holds the
parsed service models, endpoint rules and partitions it has read: about 11 MiB once ``logs``
and ``sts`` clients exist, and every ``boto3.Session()`` builds its own, so ten handlers would
cost ten times that. It holds only data read from botocore's files, so one per process (per
``AWS_DATA_PATH``) serves every session; credentials, profile, region and configuration stay
each session's own, and so do clients and their HTTP connections (the handler builds new
clients in a forked child).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import re
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    RefreshableCredentials,
)
from botocore.exceptions import ClientError, NoRegionError
from botocore.loaders import Loader, create_loader

from .._compat import drop_repeated_search_paths
from .._exceptions import ConfigurationError
from .._options import (
    ROLE_ARN_PATTERN,
    ROLE_ARN_RULE,
    as_float,
    as_int,
    as_optional_str,
    check_pattern,
)
from .._process import at_fork
from .._redact import install_redaction

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

__all__ = [
    "ASSUME_ROLE_METHOD",
    "DEFAULT_CALL_BUDGET",
    "STS_ATTEMPTS",
    "AssumeRoleError",
    "AssumeRoleProvider",
    "Clock",
    "SessionOptions",
    "after_fork_in_child",
    "default_role_session_name",
    "effective_region",
    "new_session",
    "non_refreshing_problem",
    "refresh_windows",
    "refreshable_session",
    "regional_sts_client",
    "request_timeouts",
    "sts_config",
]

Clock = Callable[[], datetime.datetime]
"""A function returning the current time as an aware datetime."""

ASSUME_ROLE_METHOD = "assume-role"
STS_MIN_DURATION = 900
STS_MAX_DURATION = 43_200
DEFAULT_DURATION = 3_600
# botocore's own windows; ours never exceed them.
BOTOCORE_ADVISORY_WINDOW = 900.0
BOTOCORE_MANDATORY_WINDOW = 600.0
GLOBAL_STS_HOST = "sts.amazonaws.com"

DEFAULT_CALL_BUDGET = 10.0
"""Seconds one AWS call may take, retries included: the handler's default ``flush_timeout``."""
STS_ATTEMPTS = 2
"""Tries of one AssumeRole call: one retry rides out a dropped connection."""
MIN_CONNECT_TIMEOUT = 0.5
MIN_READ_TIMEOUT = 1.0
MAX_CONNECT_TIMEOUT = 5.0
# botocore's standard retry mode pauses up to 1 s before its first retry (throttling base
# scale), doubling after each; the pauses come out of the budget too.
_FIRST_RETRY_PAUSE = 1.0

_SESSION_NAME = r"[\w+=,.@-]{2,64}"
_SESSION_NAME_RULE = "2 to 64 characters of letters, digits and +=,.@_-"
_EXTERNAL_ID = r"[\w+=,.@:/-]{2,1224}"
_EXTERNAL_ID_RULE = "2 to 1224 characters of letters, digits and +=,.@:/_-"


_loaders_lock = threading.Lock()
_loaders: dict[str | None, Loader] = {}


def after_fork_in_child() -> None:
    """Renew the lock of the shared loaders in a forked child.

    The child must not inherit the lock held by a thread it does not have. Registered with
    the process layer's ``at_fork`` below.
    """
    global _loaders_lock
    _loaders_lock = threading.Lock()


at_fork(after_in_child=after_fork_in_child)


def new_session(
    *,
    profile_name: str | None = None,
    region_name: str | None = None,
    credential_resolver: CredentialResolver | None = None,
) -> boto3.Session:
    """Return a new ``boto3.Session`` whose botocore data loader is shared in this process.

    Args:
        profile_name: Profile of the shared config files, as for ``boto3.Session``.
        region_name: Region, as for ``boto3.Session``.
        credential_resolver: Where the session's credentials come from, instead of
            botocore's default chain.

    Returns:
        A session of its own in every respect but the loader of botocore's data files.
    """
    core = botocore.session.Session(profile=profile_name)
    if credential_resolver is not None:
        core.register_component("credential_provider", credential_resolver)
    data_path = core.get_config_variable("data_path")
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = create_loader(data_path)
        core.register_component("data_loader", loader)
        session = boto3.Session(
            botocore_session=core, profile_name=profile_name, region_name=region_name
        )
        # boto3.Session appends its own data directory to the loader's search paths: with
        # one loader for all, drop the repeat so the list does not grow with every session.
        drop_repeated_search_paths(loader)
    return session


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def refresh_windows(lifetime_seconds: float) -> tuple[float, float]:
    """Return the (advisory, mandatory) refresh windows for a credential's lifetime.

    The rule: refreshing starts when a quarter of the lifetime remains, at most 900 s before
    expiry, and becomes blocking at an eighth, at most 600 s before expiry. botocore's fixed
    900 s / 600 s windows would make a 900 s credential refresh before every request; with
    this rule it is refreshed after about 675 s, 5.3 times an hour.

    Args:
        lifetime_seconds: How long the credential lives, in seconds.

    Returns:
        The advisory and mandatory windows, in seconds before expiry.
    """
    lifetime = max(0.0, lifetime_seconds)
    return (
        min(BOTOCORE_ADVISORY_WINDOW, lifetime / 4),
        min(BOTOCORE_MANDATORY_WINDOW, lifetime / 8),
    )


def request_timeouts(budget: float, attempts: int = 1) -> tuple[float, float]:
    """Return (connect, read) timeouts in seconds so that ``attempts`` tries fit in ``budget``.

    Each try gets an equal share of what the pauses between tries leave; a quarter of a
    share (0.5 to 5 s) goes to connecting, the rest to waiting for the answer. Neither goes
    below 0.5 s (connect) and 1 s (read), so a tiny budget cannot fail healthy requests.

    Args:
        budget: Longest time, in seconds, the call may take with its retries.
        attempts: How many times the client tries the call, the first included.

    Returns:
        ``connect_timeout`` and ``read_timeout`` for ``botocore.config.Config``, in seconds.
    """
    tries = max(1, attempts)
    pauses = _FIRST_RETRY_PAUSE * (2 ** (tries - 1) - 1)
    share = max(0.0, budget - pauses) / tries
    connect = min(MAX_CONNECT_TIMEOUT, max(MIN_CONNECT_TIMEOUT, share / 4))
    return connect, max(MIN_READ_TIMEOUT, share - connect)


def default_role_session_name() -> str:
    """Return a valid RoleSessionName derived from the program and host names.

    The result matches STS's rule (2 to 64 characters of ``[A-Za-z0-9_+=,.@-]``) so that
    CloudTrail shows which program on which host assumed the role.
    """
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    raw = f"{program}@{platform.node() or 'host'}"
    name = re.sub(r"[^\w+=,.@-]", "-", raw, flags=re.ASCII)[:64]
    return name if len(name) >= 2 else "watchtower-refresh"


def effective_region(session: boto3.Session, explicit: str | None = None) -> str | None:
    """Return the region to use: ``explicit``, else the session's, else ``AWS_REGION``.

    botocore reads ``AWS_DEFAULT_REGION`` and the profile's ``region`` but not
    ``AWS_REGION``, the variable other SDKs and many platforms set; it is used here only
    where botocore finds nothing, so it never overrides botocore's own choice.
    """
    return explicit or session.region_name or os.environ.get("AWS_REGION") or None


def sts_config(budget: float = DEFAULT_CALL_BUDGET) -> Config:
    """Return the STS client's config: one AssumeRole, its retry included, ends within ``budget``.

    botocore's defaults are 60 s per read and up to three tries; with these a hanging STS
    answer cannot outlast the handler's ``flush_timeout``.

    Args:
        budget: Longest time, in seconds, one call may take with its retry.
    """
    connect, read = request_timeouts(budget, STS_ATTEMPTS)
    return Config(
        retries={"mode": "standard", "total_max_attempts": STS_ATTEMPTS},
        connect_timeout=connect,
        read_timeout=read,
    )


def regional_sts_client(session: boto3.Session, region: str, **client_args: Any) -> STSClient:
    """Return an STS client for ``region`` that never uses the global endpoint.

    ``AWS_STS_REGIONAL_ENDPOINTS=legacy`` (or ``sts_regional_endpoints = legacy`` in a
    profile) sends every region to ``sts.amazonaws.com``; the regional endpoint is then named
    explicitly. An endpoint override in the environment (``AWS_ENDPOINT_URL_STS``,
    ``AWS_ENDPOINT_URL``) is the user's choice and is kept, even if it names the global one.
    The client's config is ``sts_config()`` unless ``client_args`` gives a ``config``.
    """
    config = client_args.pop("config", None) or sts_config()
    client = session.client("sts", region_name=region, config=config, **client_args)
    overridden = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
    if urlsplit(client.meta.endpoint_url).hostname == GLOBAL_STS_HOST and not overridden:
        suffix = "amazonaws.com.cn" if client.meta.partition == "aws-cn" else "amazonaws.com"
        endpoint = f"https://sts.{region}.{suffix}"
        client = session.client(
            "sts", region_name=region, endpoint_url=endpoint, config=config, **client_args
        )
    return client


class AssumeRoleError(ClientError):
    """An error answer to AssumeRole, which also says which role was asked for.

    A ``ClientError`` in every other respect (same response, same operation name), so code
    that judges errors by their code treats it as before; advice can name the role.
    """

    def __init__(self, error_response: Any, operation_name: str, role_arn: str = "") -> None:
        super().__init__(error_response, operation_name)
        self.role_arn = role_arn
        """The ARN of the role that AssumeRole was asked for."""

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.response, self.operation_name, self.role_arn)


class AssumeRoleProvider(CredentialProvider):
    """A botocore credential provider that assumes a role with refresh windows sized to fit.

    Registered as the only provider of its session's credential resolver. ``load()`` calls
    AssumeRole once and returns ``RefreshableCredentials`` whose ``refresh_using`` calls it
    again; expiry times come from STS's ``Expiration`` as ISO 8601 with an offset.
    """

    METHOD = ASSUME_ROLE_METHOD
    CANONICAL_NAME = "watchtower-refresh-assume-role"

    def __init__(
        self,
        *,
        source_session: boto3.Session,
        role_arn: str,
        role_session_name: str,
        duration_seconds: int,
        external_id: str | None,
        region_name: str | None,
        clock: Clock,
        sts_timeout: float = DEFAULT_CALL_BUDGET,
    ) -> None:
        super().__init__()
        self._source_session = source_session
        self._role_arn = role_arn
        self._role_session_name = role_session_name
        self._duration_seconds = duration_seconds
        self._external_id = external_id
        self._region_name = region_name
        self._clock = clock
        self._sts_timeout = sts_timeout
        self._sts: STSClient | None = None
        self._sts_lock = threading.Lock()

    def _sts_client(self) -> STSClient:
        with self._sts_lock:
            if self._sts is None:
                region = self._region_name or self._source_session.region_name
                if not region:
                    # Without a region STS would go to the global endpoint.
                    raise NoRegionError
                self._sts = regional_sts_client(
                    self._source_session, region, config=sts_config(self._sts_timeout)
                )
            return self._sts

    def fetch(self) -> dict[str, str]:
        """Call AssumeRole and return botocore's credential metadata.

        Returns:
            ``access_key``, ``secret_key``, ``token`` and ``expiry_time`` (ISO 8601 with its
            UTC offset, taken from the response).
        """
        kwargs: dict[str, Any] = {
            "RoleArn": self._role_arn,
            "RoleSessionName": self._role_session_name,
            "DurationSeconds": self._duration_seconds,
        }
        if self._external_id:
            kwargs["ExternalId"] = self._external_id
        try:
            credentials = self._sts_client().assume_role(**kwargs)["Credentials"]
        except ClientError as exc:
            raise AssumeRoleError(exc.response, exc.operation_name, self._role_arn) from exc
        expiration = credentials["Expiration"]
        if expiration.tzinfo is None:  # botocore parses it aware; keep it so if a stub does not
            expiration = expiration.replace(tzinfo=datetime.timezone.utc)
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": expiration.isoformat(),
        }

    def load(self) -> RefreshableCredentials:
        """Assume the role and return credentials that refresh themselves."""
        metadata = self.fetch()
        expiry = datetime.datetime.fromisoformat(metadata["expiry_time"])
        # The lifetime sizes the windows only; a slow local clock can only shorten it.
        lifetime = min(self._duration_seconds, (expiry - self._clock()).total_seconds())
        advisory, mandatory = refresh_windows(lifetime)
        return RefreshableCredentials(
            access_key=metadata["access_key"],
            secret_key=metadata["secret_key"],
            token=metadata["token"],
            expiry_time=expiry,
            refresh_using=self.fetch,
            method=self.METHOD,
            time_fetcher=self._clock,
            advisory_timeout=math.ceil(advisory),
            mandatory_timeout=math.ceil(mandatory),
        )


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    """Validated options of ``refreshable_session``; building from them does no network I/O."""

    role_arn: str | None = None
    role_session_name: str | None = None
    duration_seconds: int = DEFAULT_DURATION
    external_id: str | None = None
    region_name: str | None = None
    profile_name: str | None = None
    base_session: boto3.Session | None = None
    clock: Clock | None = None
    sts_timeout: float = DEFAULT_CALL_BUDGET

    @classmethod
    def parse(
        cls,
        role_arn: str | None = None,
        *,
        role_session_name: str | None = None,
        duration_seconds: int | str | None = None,
        external_id: str | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
        source_profile: str | None = None,
        base_session: boto3.Session | None = None,
        clock: Clock | None = None,
        sts_timeout: float | str = DEFAULT_CALL_BUDGET,
    ) -> SessionOptions:
        """Validate ``refreshable_session``'s arguments; raise ``ConfigurationError`` if wrong."""
        # Not among the role-only options: the handler passes its flush_timeout in every mode.
        budget = as_float("sts_timeout", sts_timeout, minimum=0.0)
        region = as_optional_str("region_name", region_name)
        arn = as_optional_str("role_arn", role_arn)
        profile = as_optional_str("profile_name", profile_name)
        source = as_optional_str("source_profile", source_profile)
        if arn is None:
            _refuse_role_only(
                role_session_name=role_session_name,
                duration_seconds=duration_seconds,
                external_id=external_id,
                source_profile=source,
                base_session=base_session,
            )
            return cls(region_name=region, profile_name=profile, clock=clock, sts_timeout=budget)
        check_pattern("role_arn", arn, ROLE_ARN_PATTERN, ROLE_ARN_RULE)
        session_name = _optional_matching(
            "role_session_name", role_session_name, _SESSION_NAME, _SESSION_NAME_RULE
        )
        duration = as_int(
            "duration_seconds",
            DEFAULT_DURATION if duration_seconds in (None, "") else duration_seconds,
            minimum=STS_MIN_DURATION,
            maximum=STS_MAX_DURATION,
        )
        ext_id = _optional_matching("external_id", external_id, _EXTERNAL_ID, _EXTERNAL_ID_RULE)
        _refuse_two_sources(profile_name=profile, source_profile=source, base_session=base_session)
        return cls(
            role_arn=arn,
            role_session_name=session_name,
            duration_seconds=duration,
            external_id=ext_id,
            region_name=region,
            profile_name=profile or source,
            base_session=base_session,
            clock=clock,
            sts_timeout=budget,
        )

    def build(self) -> boto3.Session:
        """Return a new session for these options; nothing is fetched until a client asks."""
        install_redaction()
        if self.role_arn is None:
            session = new_session(profile_name=self.profile_name, region_name=self.region_name)
            region = effective_region(session)
            if region == session.region_name:
                return session
            return new_session(profile_name=self.profile_name, region_name=region)
        source = self.base_session or new_session(
            profile_name=self.profile_name, region_name=self.region_name
        )
        region = effective_region(source, self.region_name)
        provider = AssumeRoleProvider(
            source_session=source,
            role_arn=self.role_arn,
            role_session_name=self.role_session_name or default_role_session_name(),
            duration_seconds=self.duration_seconds,
            external_id=self.external_id,
            region_name=region,
            clock=self.clock or _utc_now,
            sts_timeout=self.sts_timeout,
        )
        return new_session(region_name=region, credential_resolver=CredentialResolver([provider]))


def _refuse_role_only(**given: object) -> None:
    """Raise if an option that applies only with ``role_arn`` is given (not None or "")."""
    names = sorted(name for name, value in given.items() if value not in (None, ""))
    if names:
        message = f"{', '.join(names)} only apply with role_arn"
        raise ConfigurationError(message)


def _optional_matching(name: str, value: object, pattern: str, rule: str) -> str | None:
    """``value`` as a non-empty string that matches ``pattern``, or None when not given."""
    text = as_optional_str(name, value)
    return None if text is None else check_pattern(name, text, pattern, rule)


def _refuse_two_sources(**sources: object) -> None:
    """Raise if more than one source of credentials for the role is given (not None)."""
    given = [name for name, value in sources.items() if value is not None]
    if len(given) > 1:
        message = f"give at most one source of credentials for role_arn, not {' and '.join(given)}"
        raise ConfigurationError(message)


def refreshable_session(
    role_arn: str | None = None,
    *,
    role_session_name: str | None = None,
    duration_seconds: int | str | None = None,
    external_id: str | None = None,
    region_name: str | None = None,
    profile_name: str | None = None,
    source_profile: str | None = None,
    base_session: boto3.Session | None = None,
    clock: Clock | None = None,
    sts_timeout: float | str = DEFAULT_CALL_BUDGET,
) -> boto3.Session:
    """Return a boto3 session whose credentials refresh themselves before they expire.

    Args:
        role_arn: The role to assume. Without it, the session uses ``profile_name`` or the
            default credential chain, whose providers refresh on their own.
        role_session_name: RoleSessionName, 2 to 64 characters; by default
            ``program@host``.
        duration_seconds: Requested credential lifetime, 900 to 43,200 seconds (default
            3,600). Refreshing starts when a quarter of the lifetime remains (at most 900 s
            before expiry) and blocks at an eighth (at most 600 s): a 900 s credential is
            fetched about once every 675 s, not before every request.
        external_id: ExternalId for the AssumeRole call, if the role's trust policy needs one.
        region_name: Region of the session and of its STS endpoint. STS is always called on
            a regional endpoint; with no region anywhere (argument, ``AWS_REGION``,
            ``AWS_DEFAULT_REGION``, profile), the first AssumeRole raises ``NoRegionError``
            instead of going to the global endpoint. ``AWS_ENDPOINT_URL_STS`` and
            ``AWS_ENDPOINT_URL`` are honoured.
        profile_name: A profile of the shared config files. With ``role_arn`` it is the
            source of the credentials used to assume the role (same as ``source_profile``).
        source_profile: Profile whose credentials assume ``role_arn``.
        base_session: Session whose credentials assume ``role_arn``.
        clock: Returns the current time as an aware datetime; for simulations and tests.
        sts_timeout: Longest time, in seconds, one AssumeRole call may take, its one retry
            included (default 10, the handler's default ``flush_timeout``); connect and read
            timeouts are sized from it. Used with ``role_arn`` only.

    Returns:
        A ``boto3.Session``. Nothing is fetched until a client first needs credentials.

    Raises:
        ConfigurationError: An argument is invalid (the message says which and why).
    """
    return SessionOptions.parse(
        role_arn,
        role_session_name=role_session_name,
        duration_seconds=duration_seconds,
        external_id=external_id,
        region_name=region_name,
        profile_name=profile_name,
        source_profile=source_profile,
        base_session=base_session,
        clock=clock,
        sts_timeout=sts_timeout,
    ).build()


def non_refreshing_problem(credentials: Credentials | None) -> str | None:
    """Say what is wrong with credentials that carry a session token but cannot refresh.

    Args:
        credentials: What ``session.get_credentials()`` returned.

    Returns:
        A sentence saying what stops working and what to do, or None when the credentials
        refresh themselves or are long-term keys.
    """
    if credentials is None or isinstance(credentials, RefreshableCredentials):
        return None
    if not credentials.get_frozen_credentials().token:
        return None
    method = getattr(credentials, "method", None) or "unknown"
    return (
        f"the credentials in use (source: {method}) carry a session token but cannot refresh, "
        "so delivery stops when that session expires; pass role_arn= (and the source "
        "credentials) or profile_name= to RefreshingCloudWatchLogHandler instead of keys "
        "from one AssumeRole answer, or export AWS_CONTAINER_CREDENTIALS_* / use a profile "
        "with credential_process"
    )
