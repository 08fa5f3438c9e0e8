"""The end-to-end check against moto with injected faults: one exit code per failure."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import boto3
import pytest

from tests.conftest import ROLE_ARN
from watchtower_refresh import RefreshingCloudWatchLogHandler, WatchtowerRefreshWarning
from watchtower_refresh._cli import check, main
from watchtower_refresh._cli.check import (
    EXIT_ACCESS_DENIED,
    EXIT_AWS_ERROR,
    EXIT_EXPIRED,
    EXIT_GLOBAL_STS,
    EXIT_INVALID,
    EXIT_NO_CREDENTIALS,
    EXIT_NO_REGION,
    EXIT_OK,
    run_check,
)
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault

GROUP = "/app/checked"


def test_success_writes_and_reads_back(aws: FakeAWS) -> None:
    steps: list[str] = []
    report = run_check({"role_arn": ROLE_ARN, "log_group_name": GROUP}, progress=steps.append)
    assert report.exit_code == EXIT_OK, report.problem
    assert report.credential_source == "assume-role"
    assert report.refreshes is True
    assert report.expires is not None
    assert report.identity is not None
    assert report.identity.startswith("arn:aws:sts::123456789012:assumed-role/logger/")
    assert report.region == "us-east-1"
    assert report.sts_endpoint == report.logs_endpoint == aws.endpoint_url
    assert report.written
    assert report.read_back is True
    assert steps == [
        "resolving credentials",
        "asking STS who we are",
        f"writing a test event to {GROUP}",
        "reading it back",
    ]
    events = boto3.client("logs").filter_log_events(logGroupName=GROUP)["events"]
    assert [e["message"].split()[:2] for e in events] == [["watchtower-refresh", "check"]]


def test_no_write(aws: FakeAWS) -> None:
    report = run_check({"log_group_name": GROUP}, write=False)
    assert report.exit_code == EXIT_OK
    assert report.credential_source == "env"
    assert report.refreshes is False
    assert not report.written
    assert aws.injector.counts["PutLogEvents"] == 0


def test_no_region(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    report = run_check({"role_arn": ROLE_ARN})
    assert report.exit_code == EXIT_NO_REGION
    assert report.problem is not None
    assert "--region" in report.problem
    assert sum(aws.injector.counts.values()) == 0


def test_global_sts_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "https://sts.amazonaws.com")
    report = run_check({"role_arn": ROLE_ARN})
    assert report.exit_code == EXIT_GLOBAL_STS
    assert report.problem is not None
    assert "global endpoint (https://sts.amazonaws.com)" in report.problem


def test_legacy_setting_with_a_profile_role_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/d\n"
        "credential_source = Environment\nsts_regional_endpoints = legacy\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    report = run_check({"profile_name": "deploy"})
    assert report.exit_code == EXIT_GLOBAL_STS
    assert "AWS_STS_REGIONAL_ENDPOINTS" in str(report.problem)


def test_no_credentials(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    report = run_check({"log_group_name": GROUP})
    assert report.exit_code == EXIT_NO_CREDENTIALS
    assert "--profile or --role-arn" in str(report.problem)


def test_unrecognised_credentials(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("InvalidClientTokenId", action="GetCallerIdentity", status=403))
    assert run_check({}).exit_code == EXIT_NO_CREDENTIALS


def test_expired_static_credentials(
    aws: FakeAWS, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.injector.clock = clock
    keys = boto3.client("sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="check")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", keys["SessionToken"])
    clock.advance(7200)
    report = run_check({"log_group_name": GROUP})
    assert report.exit_code == EXIT_EXPIRED
    assert report.problem is not None
    assert "credentials from env have expired" in report.problem
    assert "--role-arn" in report.problem
    for secret in aws.injector.issued_secrets():
        assert secret not in json.dumps(report.__dict__)


@pytest.mark.parametrize(
    ("action", "named", "fix"),
    [
        ("AssumeRole", "sts:AssumeRole", f"--document caller --role-arn {ROLE_ARN}"),
        ("CreateLogGroup", "logs:CreateLogGroup", "--account 123456789012"),
        ("PutLogEvents", "logs:PutLogEvents", f"policy --log-group {GROUP} --region us-east-1"),
    ],
)
def test_access_denied_names_the_action_and_the_fix(
    aws: FakeAWS, action: str, named: str, fix: str
) -> None:
    code = "AccessDenied" if action == "AssumeRole" else "AccessDeniedException"
    aws.injector.add_fault(Fault(code, action=action, status=403, message="not authorized"))
    report = run_check({"role_arn": ROLE_ARN, "log_group_name": GROUP})
    assert report.exit_code == EXIT_ACCESS_DENIED
    assert report.problem is not None
    assert f"{named} was denied: not authorized" in report.problem
    assert fix in report.problem


def test_existing_group_with_create_denied_delivers_with_a_warning_as_the_handler_does(
    aws: FakeAWS,
) -> None:
    boto3.client("logs").create_log_group(logGroupName=GROUP)  # set up by someone else
    aws.injector.add_fault(
        Fault("AccessDeniedException", action="CreateLogGroup", status=400, message="no")
    )
    report = run_check({"role_arn": ROLE_ARN, "log_group_name": GROUP})
    assert report.exit_code == EXIT_OK, report.problem
    assert report.read_back is True
    (warning,) = report.warnings
    assert warning.startswith("CreateLogGroup was refused (AccessDeniedException: no)")
    assert "grant logs:CreateLogGroup" in warning
    # The handler, configured the same way, delivers too, with one warning.
    handler = RefreshingCloudWatchLogHandler(GROUP, role_arn=ROLE_ARN, use_queues=False)
    with pytest.warns(WatchtowerRefreshWarning, match="CreateLogGroup"):
        handler.handle(logging.makeLogRecord({"msg": "delivered", "levelno": logging.INFO}))
    handler.close()
    assert handler.stats.delivered == 1


def test_retention_and_tags_are_set_up_as_the_handler_would(aws: FakeAWS) -> None:
    options = {"log_group_name": GROUP, "log_group_retention_days": "30", "log_group_tags": "a=b"}
    report = run_check(options)
    assert report.exit_code == EXIT_OK, report.problem
    assert report.warnings == []
    (group,) = boto3.client("logs").describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"]
    assert group["retentionInDays"] == 30
    assert boto3.client("logs").list_tags_log_group(logGroupName=GROUP)["tags"] == {"a": "b"}


def test_a_refused_create_of_a_missing_group_is_the_failure_reported(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("AccessDeniedException", action="CreateLogGroup", message="no"))
    report = run_check({"log_group_name": GROUP})
    assert report.exit_code == EXIT_ACCESS_DENIED
    assert "logs:CreateLogGroup was denied: no" in str(report.problem)


def test_read_back_denied_is_a_note_not_a_failure(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("AccessDeniedException", action="GetLogEvents"))
    report = run_check({"log_group_name": GROUP})
    assert report.exit_code == EXIT_OK
    assert report.written
    assert report.read_back is None
    assert "logs:GetLogEvents" in str(report.note)


def test_unreachable_endpoint(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    report = run_check({"log_group_name": GROUP})
    assert report.exit_code == EXIT_AWS_ERROR
    assert "127.0.0.1:9" in str(report.problem)


def test_invalid_configuration() -> None:
    report = run_check({"log_group_name": "bad name"})
    assert report.exit_code == EXIT_INVALID
    assert "log_group_name 'bad name' is invalid" in str(report.problem)
    assert run_check({"no_such_option": 1}).exit_code == EXIT_INVALID


def test_without_a_group_it_says_it_writes_to_the_default(
    aws: FakeAWS, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_check({})
    assert report.exit_code == EXIT_OK, report.problem
    assert (report.log_group, report.default_log_group) == ("watchtower", True)
    assert main(["check"]) == EXIT_OK
    out = capsys.readouterr().out
    assert re.search(r"^log group +watchtower \(the handler's default: no --log-group", out, re.M)
    assert re.search(r"^test event +written to \S+ in watchtower and read back$", out, re.M)
    with pytest.warns(DeprecationWarning, match="log_group is deprecated"):
        assert run_check({"log_group": "/app/alias"}).log_group == "/app/alias"  # the old name


def test_a_refused_assume_role_names_both_policies_and_both_fixes(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("AccessDenied", action="AssumeRole", status=403, message="no"))
    report = run_check({"role_arn": ROLE_ARN, "log_group_name": GROUP})
    assert report.exit_code == EXIT_ACCESS_DENIED
    problem = str(report.problem)
    assert "the caller's policy does not allow sts:AssumeRole" in problem
    assert "the role's trust policy does not trust the caller" in problem
    assert f"watchtower-refresh policy --document caller --role-arn {ROLE_ARN}" in problem
    assert "watchtower-refresh policy --document trust --trusted-role-arn" in problem


@pytest.mark.parametrize(
    ("code", "action"),
    [("UnrecognizedClientException", "PutLogEvents"), ("InvalidClientTokenId", "AssumeRole")],
)
def test_refused_credentials_are_said_to_be_found_and_refused(
    aws: FakeAWS, code: str, action: str
) -> None:
    aws.injector.add_fault(Fault(code, action=action, message="The security token is invalid"))
    options = {"role_arn": ROLE_ARN} if action == "AssumeRole" else {}
    report = run_check({**options, "log_group_name": GROUP})
    assert report.exit_code == EXIT_NO_CREDENTIALS
    problem = str(report.problem)
    assert problem.startswith("credentials were found (")
    assert f"but AWS refused them: {action} said {code} (The security token is invalid)" in problem
    assert "no valid AWS credentials were found" not in problem


def test_throttled_answers_are_retried_as_the_handler_would(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("ThrottlingException", action="PutLogEvents", times=4))
    steps: list[str] = []
    report = run_check({"log_group_name": GROUP}, progress=steps.append)
    assert report.exit_code == EXIT_OK, report.problem
    assert report.read_back is True
    assert aws.injector.counts["ThrottlingException"] == 4
    assert any("answered ThrottlingException: trying again in" in step for step in steps)
    messages = [
        e["message"] for e in boto3.client("logs").filter_log_events(logGroupName=GROUP)["events"]
    ]
    assert len(messages) == 1


def test_throttled_to_the_end_fails_after_the_attempts(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "TRANSIENT_ATTEMPTS", 2)
    aws.injector.add_fault(Fault("ThrottlingException", action="GetCallerIdentity"))
    report = run_check({"log_group_name": GROUP})
    assert report.exit_code == EXIT_AWS_ERROR
    assert str(report.problem) == (
        "GetCallerIdentity failed: AWS answered ThrottlingException: injected fault "
        "(the last of 2 attempts, with backoff between them)"
    )


def test_a_misspelt_region_is_refused_and_an_unknown_one_warned_about(aws: FakeAWS) -> None:
    report = run_check({"region_name": "eu-wst-1"})
    assert report.exit_code == EXIT_INVALID
    assert str(report.problem).startswith(
        "region 'eu-wst-1' is not a region: did you mean eu-west-1?"
    )
    assert aws.injector.counts.total() == 0
    report = run_check({"region_name": "eu-west-9", "log_group_name": GROUP}, write=False)
    assert report.exit_code == EXIT_OK, report.problem
    (warning,) = report.warnings
    assert warning.startswith("region 'eu-west-9' is not in the endpoint data of botocore")
