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
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault, read_messages


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
