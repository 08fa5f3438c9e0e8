"""Each example runs as a user would run it, against the fake AWS, and its records arrive."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REGION, ROLE_ARN
from watchtower_refresh._fake_aws import FakeAWS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_quickstart(aws: FakeAWS, messages: Callable[[str], list[str]]) -> None:
    env = {**os.environ, **aws.environment(REGION), "ROLE_ARN": ROLE_ARN}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(messages("/app/orders")) == sorted(
        [
            "INFO orders order 1042 placed",
            '{"order": 1042, "state": "payment pending"}',
        ]
    )
    assert aws.injector.counts["AssumeRole"] == 1
