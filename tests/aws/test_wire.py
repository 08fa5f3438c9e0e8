"""PutLogEvents with our own body: equal to botocore's, signed, delivered, safe to fall back."""

from __future__ import annotations

import datetime
import functools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import REGION, ROLE_ARN, run_python
from watchtower_refresh import refreshable_session
from watchtower_refresh._aws import wire
from watchtower_refresh._aws.wire import build_body, install, put_events, wired
from watchtower_refresh.testing import Captured, FakeAWS, FakeClock

GROUP = "/wire/test"
NOW = int(time.time() * 1000)
# Names and messages that JSON must escape, and text outside ASCII and the BMP.
AWKWARD = [
    'say "hi"',
    "back\\slash \\n not a newline",
    "tab\there\nnewline\rreturn\x00nul\x1funit\x7fdel",
    "é ü ß ø \u2013 café",
    "日本語のログ",
    "emoji 🚀 and 𝄞 outside the BMP",
    "\u2028line separator\u2029paragraph",
    "</script><RequestIdish>",
    "x" * 5000,
]


def logs_client(**config: Any) -> Any:
    config.setdefault("parameter_validation", False)
    return boto3.client("logs", region_name=REGION, config=Config(**config))


@functools.cache
def serializing_client() -> Any:
    return botocore.session.get_session().create_client(
        "logs",
        region_name=REGION,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
        config=Config(parameter_validation=False),
    )


def serialized_by_botocore(
    group: str, stream: str, events: list[tuple[int, str]], entity: Any = None
) -> bytes:
    client = serializing_client()
    model = client.meta.service_model.operation_model("PutLogEvents")
    params: dict[str, Any] = {
        "logGroupName": group,
        "logStreamName": stream,
        "logEvents": [{"timestamp": ts, "message": msg} for ts, msg in events],
    }
    if entity is not None:
        params["entity"] = entity
    body: bytes = client._serializer.serialize_to_request(params, model)["body"]
    return body


def read_stream(client: Any, stream: str, group: str = GROUP) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    while True:
        page = client.get_log_events(**kwargs)
        found += [(event["timestamp"], event["message"]) for event in page["events"]]
        if not page["events"] or page["nextForwardToken"] == kwargs.get("nextToken"):
            return found
        kwargs["nextToken"] = page["nextForwardToken"]


@pytest.fixture
def client(aws: FakeAWS) -> Iterator[Any]:
    client = logs_client()
    client.create_log_group(logGroupName=GROUP)
    yield client
    client.close()


def make_stream(client: Any, name: str) -> str:
    client.create_log_stream(logGroupName=GROUP, logStreamName=name)
    return name


# ----------------------------------------------------------------------------- the body


@settings(max_examples=200, deadline=None)
@given(
    group=st.text(min_size=1, max_size=40),
    stream=st.text(min_size=1, max_size=40),
    events=st.lists(st.tuples(st.integers(min_value=0, max_value=2**53), st.text()), max_size=20),
)
def test_body_is_byte_for_byte_what_botocore_serializes(
    group: str, stream: str, events: list[tuple[int, str]]
) -> None:
    assert build_body(group, stream, events) == serialized_by_botocore(group, stream, events)


def test_body_of_awkward_messages_parses_back_to_them() -> None:
    events = [(NOW + n, message) for n, message in enumerate(AWKWARD)]
    body = build_body("g", "s", events)
    assert body == serialized_by_botocore("g", "s", events)
    parsed = json.loads(body)
    assert [(e["timestamp"], e["message"]) for e in parsed["logEvents"]] == events
    assert all(isinstance(e["timestamp"], int) for e in parsed["logEvents"])


ENTITY = {
    "keyAttributes": {"Type": "Service", "Name": "orders é", "Environment": "ecs:prod"},
    "attributes": {"PlatformType": "AWS::ECS"},
}


def test_body_with_an_entity_is_byte_for_byte_what_botocore_serializes() -> None:
    events = [(NOW, "one"), (NOW + 1, "two")]
    body = build_body("g", "s", events, entity=ENTITY)
    assert body == serialized_by_botocore("g", "s", events, ENTITY)
    assert json.loads(body)["entity"] == ENTITY


def test_the_entity_reaches_the_service_in_our_body(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "entity")
    puts = aws.injector.capture("PutLogEvents")
    put_events(client, GROUP, stream, [(NOW, "with entity")], entity=ENTITY)
    assert wired(client)
    assert json.loads(puts[-1].body)["entity"] == ENTITY
    assert read_stream(client, stream) == [(NOW, "with entity")]


# ----------------------------------------------------------------------------- delivery


def test_awkward_messages_read_back_as_sent(client: Any) -> None:
    stream = make_stream(client, "awkward")
    events = [(NOW + n, message) for n, message in enumerate(AWKWARD)]
    response = put_events(client, GROUP, stream, events)
    assert response.get("rejectedLogEventsInfo") is None
    assert read_stream(client, stream) == events
    assert wired(client)


def test_ten_thousand_events_read_back_in_order(client: Any) -> None:
    stream = make_stream(client, "big")
    events = [(NOW + n // 10, f"event {n} é {n * 7919 % 10007}") for n in range(10_000)]
    put_events(client, GROUP, stream, events)
    assert read_stream(client, stream) == events


def test_what_reached_the_service_is_our_body_signed(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "signed")
    seen = aws.injector.capture("PutLogEvents")
    events = [(NOW, "first \u00e9"), (NOW + 1, 'second "quoted"')]
    put_events(client, GROUP, stream, events)
    [request] = seen
    assert request.body == build_body(GROUP, stream, events)
    credentials = Credentials("AKIAFAKESOURCEKEY000", "fake-source-secret")
    assert request.headers["Authorization"] == expected_authorization(aws, request, credentials)


def expected_authorization(aws: FakeAWS, request: Captured, credentials: Credentials) -> str:
    """The SigV4 Authorization header for the captured request, computed here from scratch."""
    authorization = request.headers["Authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {name: value for name, value in request.headers.items() if name.lower() in signed}
    assert sorted(name.lower() for name in headers) == sorted(signed)
    again = AWSRequest(method=request.method, url=aws.endpoint_url + request.path, headers=headers)
    again.data = request.body  # the payload hash is computed from exactly these bytes
    again.context["timestamp"] = request.headers["X-Amz-Date"]
    auth = SigV4Auth(credentials, "logs", REGION)
    canonical = auth.canonical_request(again)
    signature = auth.signature(auth.string_to_sign(again, canonical), again)
    scope = auth.scope(again)
    return (
        f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={';'.join(signed)}, "
        f"Signature={signature}"
    )


def test_a_body_not_ours_fails_the_signature_check(aws: FakeAWS, client: Any) -> None:
    # The check above can fail: a tampered body no longer matches the signature.
    stream = make_stream(client, "tampered")
    seen = aws.injector.capture("PutLogEvents")
    put_events(client, GROUP, stream, [(NOW, "original")])
    tampered = Captured(seen[0].method, seen[0].path, seen[0].headers, seen[0].body + b" ")
    credentials = Credentials("AKIAFAKESOURCEKEY000", "fake-source-secret")
    assert tampered.headers["Authorization"] != expected_authorization(aws, tampered, credentials)


def test_threads_sending_at_once_on_one_client_each_send_their_own(
    aws: FakeAWS, client: Any
) -> None:
    threads = 8
    streams = [make_stream(client, f"thread-{n}") for n in range(threads)]
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            start.wait()
            for round_ in range(10):
                events = [
                    (NOW + round_, f"thread {index} round {round_} event {e}") for e in range(50)
                ]
                put_events(client, GROUP, streams[index], events)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    for index, stream in enumerate(streams):
        messages = [message for _, message in read_stream(client, stream)]
        assert len(messages) == 500
        assert all(message.startswith(f"thread {index} ") for message in messages)


def test_errors_are_botocores_own(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        put_events(client, GROUP, "never-created", [(NOW, "x")])
    assert wired(client)  # an error from the service is no reason to stop using the seam


def test_ordinary_calls_on_the_same_client_are_left_alone(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "mixed")
    seen = aws.injector.capture("PutLogEvents")
    put_events(client, GROUP, stream, [(NOW, "ours")])
    client.put_log_events(
        logGroupName=GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": NOW + 1, "message": "plain"}],
    )
    assert [m for _, m in read_stream(client, stream)] == ["ours", "plain"]
    assert json.loads(seen[1].body)["logEvents"] == [{"timestamp": NOW + 1, "message": "plain"}]


def test_install_is_idempotent(client: Any) -> None:
    install(client)
    install(client)
    stream = make_stream(client, "once")
    put_events(client, GROUP, stream, [(NOW, "once")])
    assert [m for _, m in read_stream(client, stream)] == ["once"]


# ----------------------------------------------------------------------------- fallback


def unregister(client: Any, event: str, unique_id: str) -> None:
    client.meta.events.unregister(f"{event}.cloudwatch-logs.PutLogEvents", unique_id=unique_id)


def test_falls_back_when_the_hook_never_fires(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "no-hook")
    install(client)
    unregister(client, "before-call", "watchtower-refresh-wire-body")
    seen = aws.injector.capture("PutLogEvents")
    put_events(client, GROUP, stream, [(NOW, "one"), (NOW + 1, "two")])
    assert [m for _, m in read_stream(client, stream)] == ["one", "two"]
    assert len(seen) == 1  # the placeholder was stopped before it was sent
    assert not wired(client)
    put_events(client, GROUP, stream, [(NOW + 2, "three")])  # the ordinary way from now on
    assert [m for _, m in read_stream(client, stream)] == ["one", "two", "three"]


def test_falls_back_when_the_request_is_serialized_otherwise(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "other-shape")

    def compact(params: dict[str, Any], **_: Any) -> None:
        # A botocore that wrote compact JSON, or another protocol, would differ from ours.
        params["body"] = json.dumps(json.loads(params["body"]), separators=(",", ":")).encode()

    client.meta.events.register_first("before-call.cloudwatch-logs.PutLogEvents", compact)
    seen = aws.injector.capture("PutLogEvents")
    put_events(client, GROUP, stream, [(NOW, "still delivered")])
    assert [m for _, m in read_stream(client, stream)] == ["still delivered"]
    assert len(seen) == 1
    assert not wired(client)


def test_falls_back_when_neither_event_fires(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "no-events")
    install(client)
    unregister(client, "before-call", "watchtower-refresh-wire-body")
    unregister(client, "before-send", "watchtower-refresh-wire-guard")
    put_events(client, GROUP, stream, [(NOW, "delivered anyway")])
    assert [m for _, m in read_stream(client, stream)] == ["delivered anyway"]
    assert not wired(client)


def test_fallback_after_an_error_of_the_placeholder(aws: FakeAWS, client: Any) -> None:
    # The placeholder went out unchanged and the service refused it: the events still go.
    install(client)
    unregister(client, "before-call", "watchtower-refresh-wire-body")
    unregister(client, "before-send", "watchtower-refresh-wire-guard")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        put_events(client, GROUP, "missing", [(NOW, "x")])
    assert not wired(client)


# ----------------------------------------------------------------------------- credentials


def role_client(clock: FakeClock) -> Any:
    session = refreshable_session(ROLE_ARN, duration_seconds=900, region_name=REGION, clock=clock)
    return session.client("logs", config=Config(parameter_validation=False))


def test_botocore_refreshes_credentials_through_the_seam(
    aws: FakeAWS, clock: FakeClock, client: Any
) -> None:
    aws.injector.clock = clock
    stream = make_stream(client, "refresh")
    seen = aws.injector.capture("PutLogEvents")
    logs = role_client(clock)
    put_events(logs, GROUP, stream, [(NOW, "first token")])
    clock.advance(800)  # 100 s left: inside the mandatory window, botocore refreshes first
    put_events(logs, GROUP, stream, [(NOW + 1, "second token")])
    assert aws.injector.counts["AssumeRole"] == 2
    assert aws.injector.counts["ExpiredTokenException"] == 0
    tokens = [request.headers["X-Amz-Security-Token"] for request in seen]
    assert tokens[0] != tokens[1]
    assert set(tokens) <= set(aws.injector.issued_secrets())
    assert [m for _, m in read_stream(client, stream)] == ["first token", "second token"]


def test_expired_token_is_botocores_error_and_a_new_client_delivers(
    aws: FakeAWS, clock: FakeClock, client: Any
) -> None:
    # AWS's clock is ahead: the client believes its token good, the service says expired.
    aws.injector.clock = lambda: clock() + datetime.timedelta(seconds=800)
    stream = make_stream(client, "expired")
    logs = role_client(clock)
    put_events(logs, GROUP, stream, [(NOW, "before")])
    clock.advance(950)  # expired for AWS; 750 s left as the client sees it: no refresh
    with pytest.raises(ClientError) as caught:
        put_events(logs, GROUP, stream, [(NOW + 1, "lost with the token")])
    assert caught.value.response["Error"]["Code"] == "ExpiredTokenException"
    assert wired(logs)
    # What the handler does on ExpiredTokenException: discard the client, build another.
    fresh = role_client(clock)
    put_events(fresh, GROUP, stream, [(NOW + 2, "after")])
    assert [m for _, m in read_stream(client, stream)] == ["before", "after"]
    assert aws.injector.counts["ExpiredTokenException"] == 1


def test_a_client_from_a_plain_botocore_session_works_too(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "botocore")
    core = botocore.session.get_session()
    logs: Any = core.create_client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)
    put_events(logs, GROUP, stream, [(NOW, "from botocore")])
    assert [m for _, m in read_stream(client, stream)] == ["from botocore"]


def test_a_forked_child_sends_with_a_client_of_its_own(aws: FakeAWS, client: Any) -> None:
    stream = make_stream(client, "fork")
    script = (
        "import os, sys, time, threading, boto3\n"
        "from botocore.config import Config\n"
        "from watchtower_refresh._aws.wire import put_events\n"
        "def client():\n"
        "    return boto3.client('logs', config=Config(parameter_validation=False))\n"
        "now = int(time.time() * 1000)\n"
        f"put_events(client(), {GROUP!r}, {stream!r}, [(now, 'parent')])\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    put_events(client(), {GROUP!r}, {stream!r}, [(now + 1, 'child')])\n"
        "    os._exit(0)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    result = run_python(aws, "-c", script)
    assert result.returncode == 0, result.stderr
    assert [m for _, m in read_stream(client, stream)] == ["parent", "child"]


def test_the_fork_hook_frees_the_lock_a_vanished_thread_held() -> None:
    held = wire._lock
    held.acquire()  # as a parent's thread would, in a child that does not have that thread
    try:
        wire.after_fork_in_child()
        client = boto3.client("logs", region_name=REGION)
        worker = threading.Thread(target=install, args=(client,), daemon=True)
        worker.start()
        worker.join(timeout=30)  # without the hook it would wait forever
        assert not worker.is_alive()
        assert wired(client)
    finally:
        held.release()
