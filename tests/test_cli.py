"""The command line, run in-process: exit codes, output, and no secrets in it."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import ROLE_ARN
from watchtower_refresh._cli import EXIT_OK, EXIT_USAGE, main
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault


def test_demo_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["demo", "--duration", "3", "--token-lifetime", "1", "--clock-skew", "0.6", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_OK
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["lost"] == 0
    assert summary["sent"] == summary["delivered"] > 0
    # 3 s of 1-s tokens: at least one refresh after the first AssumeRole, however busy the
    # machine (a loaded one sends fewer batches, so refreshes fewer times)
    assert summary["assume_role_calls"] >= 2
    assert "delivered" in err  # progress goes to stderr
    assert not re.search(r"ASIA[A-Z0-9]{12,}", out + err)
    assert "SessionToken" not in out + err


def test_demo_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duration", "1.5", "--token-lifetime", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^records lost +0$", out, re.MULTILINE)
    assert "OK: nothing lost" in out


def test_demo_without_its_extra_says_which_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)  # what a missing package looks like
    for module in ("watchtower_refresh.testing", "watchtower_refresh._cli.demo"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(["demo", "--duration", "1"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "watchtower-refresh demo: needs the demo extra: pip install 'watchtower-refresh[demo]'\n"
    )


@pytest.mark.parametrize(
    "argv",
    [[], ["demo", "--threads", "0"], ["demo", "--duration", "-1"], ["nonsense"]],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("watchtower-refresh 0.")


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "watchtower_refresh", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    assert "demo" in result.stdout


# ----------------------------------------------------------------------------- policy

ACCOUNT = "123456789012"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_prints_valid_json_matching_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "policy",
            "--log-group",
            "/app/a",
            "--log-group",
            "/app/b",
            "--region",
            "eu-west-1",
            "--account",
            ACCOUNT,
            "--no-create-log-group",
            "--log-group-retention-days",
            "30",
            "--log-group-tags",
            "team=platform",
        ],
        capsys,
    )
    assert code == EXIT_OK
    policy = json.loads(out)
    actions = {
        action
        for statement in policy["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert actions == {
        "logs:CreateLogStream",
        "logs:PutRetentionPolicy",
        "logs:PutLogEvents",
        "logs:TagResource",
    }
    resources = json.dumps(policy)
    assert "arn:aws:logs:eu-west-1:123456789012:log-group:/app/a:log-stream:*" in resources
    assert "arn:aws:logs:eu-west-1:123456789012:log-group:/app/b:*" in resources


def test_policy_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "logging.yaml"
    config.write_text(
        "version: 1\nhandlers:\n  cw:\n    (): watchtower_refresh.RefreshingCloudWatchLogHandler\n"
        "    log_group_name: /from/yaml\n    region_name: us-west-2\n    create_log_group: false\n"
    )
    code, out, _ = run(["policy", "--config", str(config), "--account", ACCOUNT], capsys)
    assert code == EXIT_OK
    policy = json.loads(out)
    assert "logs:CreateLogGroup" not in out
    assert "arn:aws:logs:us-west-2:123456789012:log-group:/from/yaml:*" in json.dumps(policy)


def test_policy_caller_and_trust_documents(capsys: pytest.CaptureFixture[str]) -> None:
    role = "arn:aws:iam::123456789012:role/app-logs"
    code, out, _ = run(["policy", "--document", "caller", "--role-arn", role], capsys)
    assert code == EXIT_OK
    assert json.loads(out)["Statement"][0] == {
        "Sid": "AssumeLoggingRole",
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": role,
    }
    code, out, _ = run(
        ["policy", "--document", "trust", "--service", "ecs", "--account", ACCOUNT], capsys
    )
    assert json.loads(out)["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--log-group", "/a", "--region", "us-east-1"],
            "needs --account ID (nothing is looked up",
        ),
        (["--log-group", "bad name", "--account", ACCOUNT], "'bad name' is invalid: 1 to 512"),
        (
            ["--log-group", "/a", "--account", ACCOUNT, "--log-group-retention-days", "31"],
            "--log-group-retention-days must be one of 1, 3, 5, 7, 14, 30, 60",
        ),
        (["--account", ACCOUNT], "needs --log-group NAME"),
        (["--document", "caller"], "needs --role-arn"),
        (["--document", "trust"], "needs --service"),
        (
            ["--config", "/no/such/file.json", "--account", ACCOUNT],
            "cannot read /no/such/file.json",
        ),
    ],
)
def test_policy_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["policy", *argv], capsys)
    assert code == EXIT_USAGE
    assert out == ""
    assert message in err


# ----------------------------------------------------------------------------- check


def test_policy_into_a_closed_pipe_exits_quietly() -> None:
    # `watchtower-refresh policy ... | head -1`: the reader is gone before the policy is out.
    argv = ["policy", "--log-group", "/a", "--region", "us-east-1", "--account", "123456789012"]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "watchtower_refresh", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == EXIT_OK


def test_check_success_human_and_json(aws: FakeAWS, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", "--role-arn", ROLE_ARN, "--log-group", "/app/cli"], capsys)
    assert code == EXIT_OK
    assert re.search(r"^credentials +assume-role \(refresh themselves; expire ", out, re.M)
    assert re.search(r"^test event +written to .* and read back$", out, re.M)
    assert re.search(r"^result +OK$", out, re.M)
    assert "... resolving credentials" in err
    code, out, _ = run(["check", "--no-write", "--json"], capsys)
    assert code == EXIT_OK
    assert json.loads(out)["credential_source"] == "env"
    assert_no_secret(aws, out + err)


def test_check_prints_a_warning_line_when_the_handler_would_warn(
    aws: FakeAWS, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("logs").create_log_group(logGroupName="/app/cli")
    aws.injector.add_fault(Fault("AccessDeniedException", action="CreateLogGroup", message="no"))
    code, out, _ = run(["check", "--log-group", "/app/cli"], capsys)
    assert code == EXIT_OK
    assert re.search(r"^warning +CreateLogGroup was refused \(AccessDeniedException", out, re.M)
    assert re.search(r"^result +OK$", out, re.M)


def test_check_from_a_json_config_file(
    aws: FakeAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "logging.json"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "handlers": {
                    "console": {"class": "logging.StreamHandler"},
                    "cw": {
                        "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                        "log_group_name": "/from/json",
                        "role_arn": ROLE_ARN,
                        "formatter": "plain",
                        "level": "INFO",
                    },
                },
            }
        )
    )
    code, out, _ = run(["check", "--config", str(config), "--json"], capsys)
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["log_group"] == "/from/json"
    assert report["credential_source"] == "assume-role"
    assert aws.injector.counts["AssumeRole"] == 1


@pytest.mark.parametrize(
    ("setup", "argv", "exit_code", "message"),
    [
        ("no-region", [], 4, "no AWS region is configured"),
        ("global-sts", ["--role-arn", ROLE_ARN], 5, "global endpoint"),
        ("no-credentials", [], 6, "no valid AWS credentials"),
        ("expired", [], 7, "have expired and cannot refresh"),
        ("denied", ["--role-arn", ROLE_ARN], 8, "logs:PutLogEvents was denied"),
        ("unreachable", [], 9, "Could not connect"),
        ("invalid", ["--log-group", "bad name"], 2, "log_group_name 'bad name' is invalid"),
    ],
)
def test_check_exit_codes_and_no_secret(
    aws: FakeAWS,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    argv: list[str],
    exit_code: int,
    message: str,
) -> None:
    if setup == "no-region":
        monkeypatch.delenv("AWS_REGION")
        monkeypatch.delenv("AWS_DEFAULT_REGION")
    elif setup == "global-sts":
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "https://sts.amazonaws.com")
    elif setup == "no-credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    elif setup == "expired":
        aws.injector.clock = clock
        keys = boto3.client("sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="cli")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["Credentials"]["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["Credentials"]["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", keys["Credentials"]["SessionToken"])
        clock.advance(7200)
    elif setup == "denied":
        aws.injector.add_fault(Fault("AccessDeniedException", action="PutLogEvents"))
    elif setup == "unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    root = logging.getLogger()  # botocore's DEBUG output must stay clean too
    root.addHandler(logging.StreamHandler(sys.stderr))
    root.setLevel(logging.DEBUG)
    code, out, err = run(["check", *argv], capsys)
    assert code == exit_code
    assert message in err
    if setup in ("expired", "denied", "unreachable"):  # these sent requests, logged at DEBUG
        assert "Making request for OperationModel" in err
    assert_no_secret(aws, out + err)


def assert_no_secret(aws: FakeAWS, text: str) -> None:
    for secret in aws.injector.issued_secrets():
        assert secret not in text
    assert "fake-source-secret" not in text
    assert not re.search(r"ASIA[A-Z0-9]{12,}", text)


def test_policy_refuses_a_bad_flag_in_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "logging.json"
    config.write_text(
        json.dumps(
            {
                "handlers": {
                    "cw": {
                        "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                        "log_group_name": "/a",
                        "create_log_group": "maybe",
                    }
                }
            }
        )
    )
    code, out, err = run(["policy", "--config", str(config), "--account", ACCOUNT], capsys)
    assert code == EXIT_USAGE
    assert out == ""
    assert "create_log_group must be true or false, not 'maybe'" in err


def test_policy_trust_names_the_role_that_assumes_the_logging_role(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = "arn:aws:iam::123456789012:role/task"
    code, out, _ = run(["policy", "--document", "trust", "--trusted-role-arn", task], capsys)
    assert code == EXIT_OK
    (statement,) = json.loads(out)["Statement"]
    assert statement == {"Effect": "Allow", "Principal": {"AWS": task}, "Action": "sts:AssumeRole"}
    code, out, err = run(
        ["policy", "--document", "trust", "--trusted-role-arn", "arn:aws:iam::123:user/me"], capsys
    )
    assert code == EXIT_USAGE
    assert "trusted role ARN 'arn:aws:iam::123:user/me' is invalid" in err


def test_policy_refuses_a_misspelt_region_and_warns_about_an_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["policy", "--log-group", "/a", "--account", ACCOUNT, "--region"]
    code, out, err = run([*argv, "eu-wst-1"], capsys)
    assert code == EXIT_USAGE
    assert out == ""
    assert "region 'eu-wst-1' is not a region: did you mean eu-west-1?" in err
    code, out, err = run([*argv, "eu-west-9"], capsys)
    assert code == EXIT_OK
    assert "arn:aws:logs:eu-west-9:" in out
    assert err.startswith("watchtower-refresh policy: warning: region 'eu-west-9' is not in")


def test_check_output_has_no_plural_mistakes(
    aws: FakeAWS, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["check", "--log-group", "/app/one"],
        ["demo", "--duration", "1", "--threads", "1"],
    ):
        main(argv)
        out, err = capsys.readouterr()
        assert not re.search(r"\b1 [a-z]+s\b", out + err), out + err


def test_policy_for_the_group_settings_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    where = ["--log-group", "/app/a", "--region", "eu-west-1", "--account", ACCOUNT]
    plain = json.loads(run(["policy", *where], capsys)[1])
    for flags in (["--log-group-class", "INFREQUENT_ACCESS"], ["--deletion-protection"]):
        code, out, err = run(["policy", *where, *flags], capsys)
        assert code == EXIT_OK
        assert "logs:DescribeLogGroups" in out  # an existing group's settings are compared
        assert "logs:DescribeLogGroups" not in json.dumps(plain)
        assert err == ""
    code, out, err = run(["policy", *where, "--kms-key-id", key], capsys)
    assert code == EXIT_OK
    assert "logs:DescribeLogGroups" in out
    assert f"the policy of key {key} must also let CloudWatch Logs use it" in err
    code, out, _ = run(["policy", "--document", "key", *where], capsys)
    assert code == EXIT_OK
    statement = json.loads(out)
    assert statement["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    group_arn = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/app/a"
    assert statement["Condition"] == {
        "ArnEquals": {"kms:EncryptionContext:aws:logs:arn": group_arn}
    }
    # From a configuration file, as the handler reads it; an entity needs nothing more.
    config = tmp_path / "logging.json"
    handler = {
        "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
        "log_group_name": "/app/a",
        "kms_key_id": key,
        "entity": "auto",
    }
    config.write_text(json.dumps({"version": 1, "handlers": {"cloudwatch": handler}}))
    code, out, _ = run(
        ["policy", "--config", str(config), "--region", "eu-west-1", "--account", ACCOUNT], capsys
    )
    assert code == EXIT_OK
    assert "logs:DescribeLogGroups" in out
    handler.pop("kms_key_id")
    config.write_text(json.dumps({"version": 1, "handlers": {"cloudwatch": handler}}))
    code, out, _ = run(
        ["policy", "--config", str(config), "--region", "eu-west-1", "--account", ACCOUNT], capsys
    )
    assert json.loads(out) == plain
