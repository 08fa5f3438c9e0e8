"""Sessions share botocore's data loader, never their credentials."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ProfileNotFound

from tests.conftest import REGION, logger_for
from watchtower_refresh import refreshable_session
from watchtower_refresh._aws import credentials
from watchtower_refresh._aws.credentials import new_session
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]


def loader_of(session: boto3.Session) -> Any:
    return session._session.get_component("data_loader")


def test_sessions_share_the_loader_and_keep_their_own_credentials() -> None:
    first = refreshable_session("arn:aws:iam::123456789012:role/one", region_name=REGION)
    second = refreshable_session("arn:aws:iam::123456789012:role/two", region_name=REGION)
    plain = refreshable_session(region_name="eu-west-1")
    assert loader_of(first) is loader_of(second) is loader_of(plain)
    assert first._session.get_component("credential_provider") is not (
        second._session.get_component("credential_provider")
    )
    assert plain.region_name == "eu-west-1"
    assert first.region_name == REGION


def test_search_paths_do_not_grow_with_sessions() -> None:
    before = list(loader_of(new_session()).search_paths)
    for _ in range(20):
        session = new_session()
    assert loader_of(session).search_paths == before
    assert len(set(before)) == len(before)


def test_a_profile_is_the_sessions_own(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.write_text("[profile other]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert new_session(profile_name="other").region_name == "ap-south-1"
    assert new_session().region_name != "ap-south-1"
    with pytest.raises(ProfileNotFound):
        new_session(profile_name="missing")


def test_ten_roles_deliver_each_with_its_own_credentials(
    aws: FakeAWS, make_handler: Any, messages: Read
) -> None:
    seen = aws.injector.capture("PutLogEvents")
    handlers = [
        make_handler(f"/roles/{n}", role_arn=f"arn:aws:iam::123456789012:role/logger-{n}")
        for n in range(10)
    ]
    for n, handler in enumerate(handlers):
        logger_for(handler, f"role{n}").info("from role %d", n)
    for handler in handlers:
        assert handler.flush(timeout=20)
    for n in range(10):
        assert messages(f"/roles/{n}") == [f"from role {n}"]
    assert aws.injector.counts["AssumeRole"] == 10
    assert len(seen) == 10
    for request in seen:
        group = re.search(rb'"logGroupName": "([^"]+)"', request.body)
        assert group is not None
        n = int(group.group(1).decode().rsplit("/", 1)[1])
        key = re.search(r"Credential=(\w+)/", request.headers["Authorization"])
        assert key is not None
        token = request.headers["X-Amz-Security-Token"]
        assert token in aws.injector.issued_secrets()
        identity = boto3.client(
            "sts",
            region_name=REGION,
            aws_access_key_id=key.group(1),
            aws_secret_access_key="unused",
            aws_session_token=token,
        ).get_caller_identity()
        assert f":assumed-role/logger-{n}/" in identity["Arn"]


def test_a_forked_child_builds_sessions_and_delivers(aws: FakeAWS, tmp_path: Any) -> None:
    script = tmp_path / "fork.py"
    script.write_text(
        "import os, logging, sys\n"
        "from watchtower_refresh import RefreshingCloudWatchLogHandler\n"
        "from watchtower_refresh._aws.credentials import new_session\n"
        "new_session().client('logs').describe_log_groups()\n"
        "pid = os.fork()\n"
        "handler = RefreshingCloudWatchLogHandler('/fork/' + ('child' if pid == 0 else 'parent'),"
        " send_interval=0.05)\n"
        "logger = logging.getLogger('x'); logger.addHandler(handler); logger.setLevel('INFO')\n"
        "logger.info('hello')\n"
        "ok = handler.flush(timeout=20)\n"
        "if pid == 0:\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status) or (0 if ok else 4))\n"
    )
    env = {**os.environ, **aws.environment(REGION)}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    logs = boto3.client("logs", region_name=REGION)
    for name in ("child", "parent"):
        events = logs.filter_log_events(logGroupName=f"/fork/{name}")["events"]
        assert [event["message"] for event in events] == ["hello"]


def test_the_fork_hook_frees_the_lock_a_vanished_thread_held() -> None:
    held = credentials._loaders_lock
    held.acquire()  # as a parent's thread would, in a child that does not have that thread
    try:
        credentials.after_fork_in_child()
        built: list[boto3.Session] = []
        worker = threading.Thread(target=lambda: built.append(new_session()), daemon=True)
        worker.start()
        worker.join(timeout=30)  # without the hook it would wait forever
        assert len(built) == 1
    finally:
        held.release()
