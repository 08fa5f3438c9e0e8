"""A local stand-in for AWS in your own tests: moto's server on loopback behind a fault injector.

moto never rejects an expired session token, so ``FaultInjector`` (WSGI middleware around
moto's app) does what AWS does: it rewrites each AssumeRole answer's ``Expiration`` by its
own clock and answers ``ExpiredTokenException`` (Logs) or ``ExpiredToken`` (STS) once a
token has passed it. It also injects throttling, 5xx answers, connection resets, access
denials and delays on demand, enforces an account-wide request rate (``Quota``: a token
bucket shared by every client, answered ``ThrottlingException`` beyond it), and counts every
request by action (``counts``) and by IAM action (``calls``: ``logs:PutLogEvents``,
``sts:AssumeRole``...). Binds 127.0.0.1 only.

Needs the ``testing`` extra (``pip install 'watchtower-refresh[testing]'``); importing this
module without it raises ``ImportError`` naming the extra. It is not re-exported by
``watchtower_refresh``: import it as ``watchtower_refresh.testing``. A pytest fixture::

    import boto3
    import pytest
    from watchtower_refresh import RefreshingCloudWatchLogHandler
    from watchtower_refresh.testing import FakeAWS, Fault, read_messages

    @pytest.fixture
    def aws(monkeypatch):
        with FakeAWS() as server:
            for name, value in server.environment("eu-west-1").items():
                monkeypatch.setenv(name, value)  # every boto3 client now goes to loopback
            yield server

    def test_orders_are_logged(aws):
        aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents", times=2))
        role = "arn:aws:iam::123456789012:role/logs"
        handler = RefreshingCloudWatchLogHandler("/app/orders", role_arn=role)
        ...
        handler.close()
        logs = boto3.client("logs", endpoint_url=aws.endpoint_url)
        assert list(read_messages(logs, "/app/orders")) == [...]

The same machinery drives ``watchtower-refresh demo`` and this package's own test suite.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import io
import json
import logging
import random
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from ._aws import Clock
from ._compat import is_moto_control, moto_request_handler, moto_reset_path, moto_wsgi_app

_EXTRA_MESSAGE = (
    "watchtower_refresh.testing needs moto's server: pip install 'watchtower-refresh[testing]'"
)
try:
    import moto  # noqa: F401  # only to fail here, with the extra's name, when it is missing
    import werkzeug.serving
except ImportError as exc:
    raise ImportError(_EXTRA_MESSAGE) from exc

__all__ = [
    "Captured",
    "FakeAWS",
    "FakeClock",
    "Fault",
    "FaultInjector",
    "Quota",
    "read_messages",
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_JSON_TYPE = "application/x-amz-json-1.1"
_SIGNED_FOR = re.compile(r"Credential=[^/]*/[^/]*/[^/]*/([^/]+)/")


class FakeClock:
    """A clock that a test moves by hand; returns aware UTC datetimes.

    Args:
        start: The time it starts at; by default the current time.
    """

    def __init__(self, start: datetime.datetime | None = None) -> None:
        self._now = start or datetime.datetime.now(datetime.timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime.datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self._now += datetime.timedelta(seconds=seconds)


@dataclasses.dataclass
class Fault:
    """An answer to inject instead of moto's.

    Attributes:
        code: AWS error code (``ThrottlingException``, ``AccessDeniedException``...), or
            ``ConnectionReset`` to close the connection without an answer.
        action: API action it applies to (``PutLogEvents``), or None for every action.
        status: HTTP status of the error answer.
        times: How many requests it applies to; None until it is removed.
        probability: Chance that a matching request gets it, 0 to 1.
        delay: Seconds to wait before answering (with ``code=""``: then pass the request on).
        message: Error message.
        answer: With ``code=""``, a JSON body to answer with (status 200) instead of moto's,
            for answers moto gets wrong, such as ``rejectedLogEventsInfo``.
    """

    code: str
    action: str | None = None
    status: int = 400
    times: int | None = None
    probability: float = 1.0
    delay: float = 0.0
    message: str = "injected fault"
    answer: dict[str, Any] | None = None


@dataclasses.dataclass
class Quota:
    """An account-wide request rate, as AWS enforces one per account and Region: a token
    bucket shared by every client, process and stream that calls ``action``.

    A request that finds no token is answered ``code`` (``ThrottlingException``) and costs
    none: the bucket refills at ``rate`` tokens a second up to ``burst``, from full, by the
    injector's clock (a ``FakeClock`` refills it only as it is moved).

    Attributes:
        rate: Requests per second allowed, in all.
        action: API action it applies to (``PutLogEvents``), or None for every action.
        burst: Most tokens the bucket holds (requests allowed at once after a quiet spell);
            by default one second's worth, ``rate``.
        code: AWS error code answered beyond the rate.
        status: HTTP status of that answer.
        allowed: Requests let through so far.
        refused: Requests answered ``code`` so far.
    """

    rate: float
    action: str | None = "PutLogEvents"
    burst: float | None = None
    code: str = "ThrottlingException"
    status: int = 400
    allowed: int = dataclasses.field(default=0, init=False)
    refused: int = dataclasses.field(default=0, init=False)
    _tokens: float | None = dataclasses.field(default=None, init=False, repr=False)
    _since: float = dataclasses.field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.rate > 0:
            message = f"a quota's rate must be above 0 requests per second, not {self.rate!r}"
            raise ValueError(message)

    def take(self, now: float) -> bool:
        """Whether a request at time ``now`` (seconds, any epoch) gets a token; counts it."""
        burst = self.rate if self.burst is None else self.burst
        if self._tokens is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + (now - self._since) * self.rate)
        self._since = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.allowed += 1
            return True
        self.refused += 1
        return False


@dataclasses.dataclass(frozen=True)
class Captured:
    """A request as it reached the service, for tests of what a client really sent.

    Attributes:
        method: HTTP method.
        path: Path and query string.
        headers: Request headers, names as the client sent them in title case
            (``X-Amz-Date``, ``Authorization``...).
        body: The request body, bytes as received.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class _Issued:
    expiration: datetime.datetime
    secrets: tuple[str, str, str]


class FaultInjector:
    """WSGI middleware that makes moto behave like AWS where it matters to a log handler.

    Args:
        app: moto's WSGI app.
        clock: The service's clock: token expiry is judged by it.
        token_lifetime: Lifetime in seconds stamped on every AssumeRole answer; by default
            the requested DurationSeconds.
        seed: Seed of the random choices made for faults with a probability.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        clock: Clock | None = None,
        token_lifetime: float | None = None,
        seed: int = 0,
    ) -> None:
        self._app = app
        self.clock: Clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.token_lifetime = token_lifetime
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._quotas: list[Quota] = []
        self._issued: dict[str, _Issued] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        """Requests received, by action; ``<code>`` keys count injected answers."""
        self.calls: collections.Counter[str] = collections.Counter()
        """Requests received, by IAM action (``logs:CreateLogGroup``), faulted ones included:
        the service is the one the request was signed for (``unsigned`` if it was not)."""
        self._captures: dict[str, list[Captured]] = {}

    # ------------------------------------------------------------ control

    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault`` into matching requests until it is used up or removed."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove_fault(self, fault: Fault) -> None:
        """Stop injecting ``fault``."""
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def add_quota(self, quota: Quota) -> Quota:
        """Enforce ``quota`` on matching requests, after any fault, until it is removed."""
        with self._lock:
            self._quotas.append(quota)
        return quota

    def remove_quota(self, quota: Quota) -> None:
        """Stop enforcing ``quota``."""
        with self._lock:
            if quota in self._quotas:
                self._quotas.remove(quota)

    def reset(self) -> None:
        """Forget faults, quotas, counts, calls, issued tokens and captures."""
        with self._lock:
            self._faults.clear()
            self._quotas.clear()
            self._issued.clear()
            self.counts.clear()
            self.calls.clear()
            self._captures.clear()

    def capture(self, action: str) -> list[Captured]:
        """Keep every later request for ``action`` (e.g. ``PutLogEvents``) in the list returned.

        The list fills as requests arrive, before any fault applies, until ``reset()``.
        """
        with self._lock:
            return self._captures.setdefault(action, [])

    def issued_secrets(self) -> list[str]:
        """Every access key, secret key and session token handed out so far."""
        with self._lock:
            return [secret for issued in self._issued.values() for secret in issued.secrets]

    # ------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve one request: inject a fault, judge the token, or pass it to moto."""
        if is_moto_control(str(environ.get("PATH_INFO", ""))):
            return self._app(environ, start_response)  # moto's own controls: never faulted
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action, json_protocol = self._action(environ, body)
        with self._lock:
            self.counts[action] += 1
            self.calls[f"{self._signed_for(environ)}:{action}"] += 1
            if action in self._captures:
                self._captures[action].append(self._captured(environ, body))
            fault = self._pick_fault(action)
            if fault is None:
                fault = self._over_quota(action)
            token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
            issued = self._issued.get(token) if token else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.code == "ConnectionReset":
            self._reset_connection(environ)
            start_response("500 Internal Server Error", [("Content-Length", "0")])
            return []
        if fault is not None and fault.code:
            return self._error(
                start_response, json_protocol, fault.status, fault.code, fault.message
            )
        if fault is not None and fault.answer is not None:
            payload = json.dumps(fault.answer).encode()
            start_response(
                "200 OK", [("Content-Type", _JSON_TYPE), ("Content-Length", str(len(payload)))]
            )
            return [payload]
        if issued is not None and self.clock() >= issued.expiration:
            code = "ExpiredTokenException" if json_protocol else "ExpiredToken"
            with self._lock:
                self.counts[code] += 1
            message = "The security token included in the request is expired"
            return self._error(start_response, json_protocol, 400, code, message)
        if action == "AssumeRole":
            return self._assume_role(environ, start_response, body)
        return self._app(environ, start_response)

    def _pick_fault(self, action: str) -> Fault | None:
        for fault in self._faults:
            if fault.action not in (None, action):
                continue
            if fault.probability < 1.0 and self._random.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            if fault.code:
                self.counts[fault.code] += 1
            return fault
        return None

    def _over_quota(self, action: str) -> Fault | None:
        now = self.clock().timestamp()
        for quota in self._quotas:
            if quota.action in (None, action) and not quota.take(now):
                self.counts[quota.code] += 1
                return Fault(quota.code, status=quota.status, message="Rate exceeded")
        return None

    @staticmethod
    def _captured(environ: dict[str, Any], body: bytes) -> Captured:
        headers = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").title()] = str(environ[key])
        query = environ.get("QUERY_STRING")
        path = str(environ.get("PATH_INFO", "")) + (f"?{query}" if query else "")
        return Captured(str(environ.get("REQUEST_METHOD", "")), path, headers, body)

    @staticmethod
    def _action(environ: dict[str, Any], body: bytes) -> tuple[str, bool]:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return target.rpartition(".")[2], True
        query = parse_qs(environ.get("QUERY_STRING", "")) or parse_qs(
            body.decode("utf-8", "replace")
        )
        return (query.get("Action") or ["unknown"])[0], False

    @staticmethod
    def _signed_for(environ: dict[str, Any]) -> str:
        # SigV4: "Credential=<key>/<date>/<region>/<service>/aws4_request"; the service
        # signed for is the IAM prefix of the action (logs, sts).
        found = _SIGNED_FOR.search(environ.get("HTTP_AUTHORIZATION", ""))
        return found.group(1) if found else "unsigned"

    @staticmethod
    def _reset_connection(environ: dict[str, Any]) -> None:
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _error(
        start_response: Callable[..., Any],
        json_protocol: bool,
        status: int,
        code: str,
        message: str,
    ) -> list[bytes]:
        if json_protocol:
            payload = json.dumps({"__type": code, "message": message}).encode()
            content_type = _JSON_TYPE
        else:
            payload = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                "</Error><RequestId>fault</RequestId></ErrorResponse>"
            ).encode()
            content_type = "text/xml"
        start_response(
            f"{status} Error",
            [("Content-Type", content_type), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def _assume_role(
        self, environ: dict[str, Any], start_response: Callable[..., Any], body: bytes
    ) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *args: Any) -> None:
            captured["status"], captured["headers"] = status, headers

        text = b"".join(self._app(environ, capture)).decode("utf-8")
        found = {
            name: re.search(f"<{name}>([^<]*)</{name}>", text)
            for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
        }
        fields = {name: match.group(1) for name, match in found.items() if match}
        if len(fields) == len(found):
            requested = parse_qs(body.decode("utf-8")).get("DurationSeconds", ["3600"])[0]
            lifetime = self.token_lifetime if self.token_lifetime is not None else float(requested)
            expiration = self.clock() + datetime.timedelta(seconds=lifetime)
            stamp = f"{expiration:%Y-%m-%dT%H:%M:%S}.{expiration.microsecond // 1000:03d}Z"
            text = text.replace(
                f"<Expiration>{fields['Expiration']}</Expiration>",
                f"<Expiration>{stamp}</Expiration>",
            )
            secrets = (fields["AccessKeyId"], fields["SecretAccessKey"], fields["SessionToken"])
            with self._lock:
                self._issued[fields["SessionToken"]] = _Issued(expiration, secrets)
        payload = text.encode("utf-8")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(payload)))])
        return [payload]


class FakeAWS:
    """moto's server with a ``FaultInjector`` in front, on 127.0.0.1 and a free port.

    Use as a context manager; ``endpoint_url`` is where clients should go.

    Args:
        clock: The service's clock (default: the real one).
        token_lifetime: Lifetime stamped on AssumeRole answers, in seconds.
        seed: Seed for probabilistic faults.
        port: TCP port to listen on; 0 (the default) picks a free one. On a port in use,
            werkzeug prints why and raises ``SystemExit``.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        token_lifetime: float | None = None,
        seed: int = 0,
        port: int = 0,
    ) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.injector = FaultInjector(
            moto_wsgi_app(), clock=clock, token_lifetime=token_lifetime, seed=seed
        )
        self._server = werkzeug.serving.make_server(
            "127.0.0.1", port, self.injector, threaded=True, request_handler=moto_request_handler()
        )
        # Resets are injected on purpose: socketserver would print each one's traceback.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.endpoint_url = f"http://{self._server.host}:{self._server.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-aws", daemon=True
        )

    def __enter__(self) -> FakeAWS:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget every resource moto holds and every fault and count of the injector."""
        self.injector.reset()
        url = f"{self.endpoint_url}{moto_reset_path()}"  # always http://127.0.0.1:<port>
        request = urllib.request.Request(url, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass
        self.injector.reset()

    def environment(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment variables that send every boto3 client here with fake source keys."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "AKIAFAKESOURCEKEY000",
            "AWS_SECRET_ACCESS_KEY": "fake-source-secret",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }


def read_messages(client: Any, group: str) -> Iterator[str]:
    """Yield the message of every event in ``group``, across all its streams."""
    paginator = client.get_paginator("filter_log_events")
    for page in paginator.paginate(logGroupName=group):
        for event in page.get("events", []):
            yield event["message"]
