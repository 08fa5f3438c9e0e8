"""Refreshing sessions: modes, windows, regional STS, expiry from the answer, validation."""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import ClientError, NoRegionError, ReadTimeoutError

from tests.conftest import REGION, ROLE_ARN
from watchtower_refresh import ConfigurationError, refresh_windows, refreshable_session
from watchtower_refresh._aws.credentials import (
    DEFAULT_CALL_BUDGET,
    STS_ATTEMPTS,
    AssumeRoleError,
    default_role_session_name,
    non_refreshing_problem,
    request_timeouts,
)
from watchtower_refresh.testing import FakeAWS, FakeClock, Fault


class Stop(Exception):
    """Raised from a before-send hook: the request is seen, never sent."""


def capture_sts_requests(session: boto3.Session) -> list[Any]:
    seen: list[Any] = []

    def stop(request: Any, **_: Any) -> None:
        seen.append(request)
        raise Stop

    session.events.register_first("before-send.sts", stop)
    return seen


def test_refresh_windows_fit_the_lifetime() -> None:
    assert refresh_windows(900) == (225, 112.5)
    assert refresh_windows(3600) == (900, 450)
    assert refresh_windows(43_200) == (900, 600)
    assert refresh_windows(-5) == (0, 0)


def test_assumed_role_refreshes_by_the_answers_expiration(aws: FakeAWS, clock: FakeClock) -> None:
    aws.injector.clock = clock
    session = refreshable_session(ROLE_ARN, duration_seconds=900, clock=clock)
    assert sum(aws.injector.counts.values()) == 0  # nothing fetched yet
    credentials = session.get_credentials()
    assert isinstance(credentials, RefreshableCredentials)
    assert credentials.method == "assume-role"
    assert aws.injector.counts["AssumeRole"] == 1
    first = credentials.get_frozen_credentials()
    clock.advance(600)  # 300 s left: more than a quarter, no refresh
    assert credentials.get_frozen_credentials() == first
    assert aws.injector.counts["AssumeRole"] == 1
    clock.advance(100)  # 200 s left: refresh
    assert credentials.get_frozen_credentials().token != first.token
    assert aws.injector.counts["AssumeRole"] == 2


def test_sts_goes_to_the_regional_endpoint() -> None:
    base = boto3.Session(region_name="eu-west-1")
    seen = capture_sts_requests(base)
    session = refreshable_session(ROLE_ARN, base_session=base, external_id="tenant-7")
    assert session.region_name == "eu-west-1"
    with pytest.raises(Stop):
        session.get_credentials()
    assert seen[0].url == "https://sts.eu-west-1.amazonaws.com/"
    body = seen[0].body.decode() if isinstance(seen[0].body, bytes) else str(seen[0].body)
    assert "ExternalId=tenant-7" in body
    assert "RoleSessionName=" in body


def test_without_a_region_sts_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    base = boto3.Session()
    seen = capture_sts_requests(base)
    session = refreshable_session(ROLE_ARN, base_session=base)
    with pytest.raises(NoRegionError):
        session.get_credentials()
    assert seen == []


def test_sts_endpoint_override_is_honoured(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.endpoint_url)
    credentials = refreshable_session(ROLE_ARN).get_credentials()
    assert credentials is not None
    assert str(credentials.get_frozen_credentials().access_key).startswith("ASIA")
    assert aws.injector.counts["AssumeRole"] == 1


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    config = tmp_path / "config"
    config.write_text(text)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))


def test_profile_mode_uses_botocores_refreshing_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        tmp_path,
        monkeypatch,
        "[profile dev]\naws_access_key_id = AKIADEVKEY0000000000\n"
        "aws_secret_access_key = dev-secret\n"
        "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/deployer\n"
        "source_profile = dev\nregion = eu-central-1\n",
    )
    dev = refreshable_session(profile_name="dev").get_credentials()
    assert dev is not None
    assert dev.method == "config-file"
    deploy = refreshable_session(profile_name="deploy")
    assert deploy.region_name == "eu-central-1"
    credentials = deploy.get_credentials()  # deferred: nothing fetched yet
    assert isinstance(credentials, RefreshableCredentials)
    assert credentials.method == "assume-role"


def test_role_assumed_from_a_source_profile(
    aws: FakeAWS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        tmp_path,
        monkeypatch,
        "[profile dev]\naws_access_key_id = AKIADEVKEY0000000000\naws_secret_access_key = s\n",
    )
    session = refreshable_session(ROLE_ARN, source_profile="dev", region_name=REGION)
    logs = session.client("logs")
    logs.create_log_group(logGroupName="/from/profile")
    assert aws.injector.counts["AssumeRole"] == 1


def test_default_chain_mode() -> None:
    credentials = refreshable_session().get_credentials()
    assert credentials is not None
    assert credentials.method == "env"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"duration_seconds": 899}, "duration_seconds must be a whole number at least 900"),
        ({"duration_seconds": 43_201}, "at most 43200"),
        ({"role_session_name": "has space"}, "role_session_name 'has space' is invalid"),
        ({"external_id": "x"}, "external_id 'x' is invalid"),
        ({"profile_name": "a", "source_profile": "b"}, "not profile_name and source_profile"),
    ],
)
def test_role_options_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        refreshable_session(ROLE_ARN, **kwargs)


def test_role_only_options_need_a_role() -> None:
    with pytest.raises(ConfigurationError, match="duration_seconds, external_id only apply"):
        refreshable_session(duration_seconds=900, external_id="abc")


def test_default_session_name_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/srv/my app:v2 (worker).py"])
    name = default_role_session_name()
    assert 2 <= len(name) <= 64
    assert name.startswith("my-app-v2--worker-.py@")
    monkeypatch.setattr(sys, "argv", [])
    assert default_role_session_name().startswith("python@")


def test_non_refreshing_problem() -> None:
    assert non_refreshing_problem(None) is None
    assert non_refreshing_problem(Credentials("AKIA", "secret")) is None
    keys = ("ASIAEXAMPLEKEY000000", "s3cr3t-value", "t0ken-value")
    problem = non_refreshing_problem(Credentials(*keys, method="env"))
    assert problem is not None
    assert "source: env" in problem
    assert "role_arn=" in problem
    assert not any(key in problem for key in keys)


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_legacy_sts_setting_does_not_send_the_role_to_the_global_endpoint(
    monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
    base = boto3.Session(region_name=region)
    seen = capture_sts_requests(base)
    with pytest.raises(Stop):
        refreshable_session(ROLE_ARN, base_session=base).get_credentials()
    assert seen[0].url == f"https://sts.{region}.amazonaws.com/"


def test_aws_region_is_used_where_botocore_finds_no_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert boto3.Session().region_name is None  # botocore alone ignores AWS_REGION
    assert refreshable_session().region_name == "ap-south-1"
    assert refreshable_session(ROLE_ARN).region_name == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert refreshable_session().region_name == "eu-north-1"  # botocore's choice stands


def test_an_sts_endpoint_override_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "https://sts.amazonaws.com")
    base = boto3.Session(region_name="eu-west-1")
    seen = capture_sts_requests(base)
    with pytest.raises(Stop):
        refreshable_session(ROLE_ARN, base_session=base).get_credentials()
    assert seen[0].url == "https://sts.amazonaws.com/"


@pytest.mark.parametrize("budget", [0.0, 2.0, DEFAULT_CALL_BUDGET, 30.0])
@pytest.mark.parametrize("attempts", [1, STS_ATTEMPTS])
def test_request_timeouts_fit_the_budget(budget: float, attempts: int) -> None:
    connect, read = request_timeouts(budget, attempts)
    assert 0.5 <= connect <= 5
    assert read >= 1
    pauses = 2 ** (attempts - 1) - 1  # botocore waits up to 1 s before its first retry
    if budget >= attempts * (0.5 + 1.0) + pauses:
        assert attempts * (connect + read) + pauses <= budget
    else:  # too small to share: the floors, which healthy requests need
        assert (connect, read) == (0.5, 1.0)


def test_a_hanging_assume_role_fails_within_its_budget(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("", action="AssumeRole", delay=20, times=STS_ATTEMPTS))
    session = refreshable_session(ROLE_ARN, sts_timeout=5)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        session.get_credentials()
    # 5 s and some slack to build the client; botocore's defaults: 60 s a try, 3 tries.
    assert time.monotonic() - started < 5 + 2.5
    assert aws.injector.counts["AssumeRole"] == STS_ATTEMPTS


def test_sts_timeout_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="sts_timeout"):
        refreshable_session(ROLE_ARN, sts_timeout="soon")
    assert refreshable_session(sts_timeout="2.5").region_name == REGION


def test_a_refused_assume_role_names_the_role(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault("AccessDenied", action="AssumeRole", status=403))
    with pytest.raises(AssumeRoleError) as raised:
        refreshable_session(ROLE_ARN).get_credentials()
    error = raised.value
    assert isinstance(error, ClientError)
    assert error.operation_name == "AssumeRole"
    assert error.response["Error"]["Code"] == "AccessDenied"
    assert error.role_arn == ROLE_ARN
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.role_arn, copy.operation_name) == (ROLE_ARN, "AssumeRole")
