"""The command line, run in-process: exit codes, output, and no secrets in it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from watchtower_refresh._cli import EXIT_OK, EXIT_USAGE, main


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
    assert summary["assume_role_calls"] >= 3
    assert "delivered" in err  # progress goes to stderr
    assert not re.search(r"ASIA[A-Z0-9]{12,}", out + err)
    assert "SessionToken" not in out + err


def test_demo_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duration", "1.5", "--token-lifetime", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^records lost +0$", out, re.MULTILINE)
    assert "OK: nothing lost" in out


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
