"""watchtower_refresh.testing: the fake AWS users may run in their own tests.

The module builds moto's server from a few of moto's private names (kept in small functions
at its top). Each test below checks one of those assumptions, so an upgrade of moto that
breaks one fails here, by name, rather than somewhere deep in the suite.
"""

from __future__ import annotations

import datetime
import importlib
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REGION, ROLE_ARN
from watchtower_refresh import _compat
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault, Quota, read_messages


def test_import_without_moto_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)  # what a missing package looks like
    monkeypatch.delitem(sys.modules, "watchtower_refresh.testing")
    with pytest.raises(ImportError, match=r"pip install 'watchtower-refresh\[testing\]'"):
        importlib.import_module("watchtower_refresh.testing")


def test_moto_wsgi_app_dispatches_logs_and_sts(aws: FakeAWS) -> None:
    logs = boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)
    logs.create_log_group(logGroupName="/compat/dispatch")
    assert [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]] == [
        "/compat/dispatch"
    ]
    sts = boto3.client("sts", region_name=REGION, endpoint_url=aws.endpoint_url)
    assert sts.get_caller_identity()["Account"] == "123456789012"


def test_moto_reset_control_forgets_resources_and_is_never_faulted(aws: FakeAWS) -> None:
    logs = boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)
    logs.create_log_group(logGroupName="/compat/reset")
    aws.injector.add_fault(Fault("ServiceUnavailableException", status=503))
    assert _compat.is_moto_control(_compat.moto_reset_path())
    aws.reset()  # would fail on the 503 if the control path were faulted
    assert logs.describe_log_groups()["logGroups"] == []


def test_assume_role_answer_is_restamped_by_the_injectors_clock(
    aws: FakeAWS, clock: FakeClock
) -> None:
    # The injector finds Expiration and the secrets in moto's XML answer by their tags.
    aws.injector.clock = clock
    aws.injector.token_lifetime = 120
    sts = boto3.client("sts", region_name=REGION, endpoint_url=aws.endpoint_url)
    answer = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="compat")["Credentials"]
    assert answer["Expiration"] == clock() + datetime.timedelta(seconds=120)
    assert answer["SessionToken"] in aws.injector.issued_secrets()
    clock.advance(121)
    expired = boto3.client(
        "logs",
        region_name=REGION,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=answer["AccessKeyId"],
        aws_secret_access_key=answer["SecretAccessKey"],
        aws_session_token=answer["SessionToken"],
    )
    with pytest.raises(expired.exceptions.ClientError, match="ExpiredTokenException"):
        expired.describe_log_groups()


def test_read_messages_reads_every_stream(aws: FakeAWS) -> None:
    logs = boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)
    logs.create_log_group(logGroupName="/compat/read")
    for stream in ("a", "b"):
        logs.create_log_stream(logGroupName="/compat/read", logStreamName=stream)
        logs.put_log_events(
            logGroupName="/compat/read",
            logStreamName=stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": f"from {stream}"}],
        )
    assert sorted(read_messages(logs, "/compat/read")) == ["from a", "from b"]


def test_calls_are_counted_by_the_iam_action_signed_for(aws: FakeAWS) -> None:
    logs = boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url)
    logs.create_log_group(logGroupName="/testing/calls")
    aws.injector.add_fault(Fault("AccessDeniedException", action="TagResource", times=1))
    with pytest.raises(ClientError):
        logs.tag_resource(resourceArn="arn:aws:logs:us-east-1:123456789012:log-group:x", tags={})
    sts = boto3.client("sts", region_name=REGION, endpoint_url=aws.endpoint_url)
    sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="calls")
    urllib.request.urlopen(f"{aws.endpoint_url}/?Action=GetCallerIdentity", timeout=10).close()
    assert aws.injector.calls == {
        "logs:CreateLogGroup": 1,
        "logs:TagResource": 1,
        "sts:AssumeRole": 1,
        "unsigned:GetCallerIdentity": 1,
    }
    aws.injector.reset()
    assert not aws.injector.calls


def test_a_quota_throttles_every_client_beyond_its_rate_and_refills(
    aws: FakeAWS, clock: FakeClock
) -> None:
    aws.injector.clock = clock
    quota = aws.injector.add_quota(Quota(5, burst=3))
    clients = [
        boto3.client("logs", region_name=REGION, endpoint_url=aws.endpoint_url) for _ in range(2)
    ]
    clients[0].create_log_group(logGroupName="/testing/quota")  # another action: not counted
    clients[0].create_log_stream(logGroupName="/testing/quota", logStreamName="s")

    def put(client: object) -> str:
        try:
            client.put_log_events(  # type: ignore[attr-defined]
                logGroupName="/testing/quota",
                logStreamName="s",
                logEvents=[{"timestamp": int(time.time() * 1000), "message": "m"}],
            )
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return "ok"

    # One bucket for both clients: three tokens, then refused until it refills.
    answers = [put(clients[n % 2]) for n in range(4)]
    assert answers[:3] == ["ok", "ok", "ok"]
    assert answers[3] == "ThrottlingException"
    assert aws.injector.counts["ThrottlingException"] == quota.refused >= 1
    clock.advance(0.3)  # 5 a second: one token back, and only one
    assert [put(clients[0]), put(clients[1])] == ["ok", "ThrottlingException"]
    assert quota.allowed == 4
    aws.injector.remove_quota(quota)
    assert [put(clients[1]) for _ in range(5)] == ["ok"] * 5
    with pytest.raises(ValueError, match="above 0"):
        Quota(0)
