"""``watchtower-refresh fake-aws``: its exports send the CLI and the quick start to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest

from watchtower_refresh._cli import EXIT_OK, EXIT_USAGE, fake_aws, main
from watchtower_refresh._cli.fake_aws import exports
from watchtower_refresh.testing import read_messages

ROOT = Path(__file__).resolve().parent.parent


def shell_environment(lines: str) -> dict[str, str]:
    """The environment a POSIX shell has after ``eval`` of ``lines``, from this one."""
    result = subprocess.run(
        ["/bin/sh", "-c", 'eval "$1" && env -0', "sh", lines],
        capture_output=True,
        check=True,
        timeout=30,
    )
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


@pytest.mark.slow
def test_exports_send_check_and_the_quick_start_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A leftover from real keys must not mix with the fake ones.
    monkeypatch.setenv("AWS_SESSION_TOKEN", "left-over-token")
    with subprocess.Popen(
        [sys.executable, "-m", "watchtower_refresh", "fake-aws", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            lines = server.stdout.read()  # stdout ends once the lines are out: $(...) returns
            env = shell_environment(lines)
            deliver_through(env)
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == EXIT_OK
        finally:
            if server.poll() is None:
                server.kill()
        assert server.stderr is not None
        notes = server.stderr.read()
    assert f"pid {server.pid}" in notes
    assert "fake AWS stopped" in notes


def deliver_through(env: dict[str, str]) -> None:
    """``check`` and the quick start, run with ``env``, deliver to the fake AWS it names."""
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "AWS_SESSION_TOKEN" not in env
    for argv in (
        ["-m", "watchtower_refresh", "check", "--log-group", "/try/check"],
        [str(ROOT / "examples" / "quickstart.py")],
    ):
        ran = subprocess.run(
            [sys.executable, *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == EXIT_OK, ran.stderr
    logs = boto3.client("logs", region_name="eu-west-1", endpoint_url=env["AWS_ENDPOINT_URL"])
    assert list(read_messages(logs, "/app/orders")) == ["order 1042 placed"]
    assert [m.split()[:2] for m in read_messages(logs, "/try/check")] == [
        ["watchtower-refresh", "check"]
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_in_process_serves_until_sigterm_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    answered: list[int] = []

    def use_then_stop() -> None:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=5) as r:
                    answered.append(r.status)
                    break
            except OSError:
                threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=use_then_stop)
    previous = signal.getsignal(signal.SIGTERM)
    stopper.start()
    try:
        assert main(["fake-aws", "--port", str(port), "--region", "us-east-1"]) == EXIT_OK
    finally:
        stopper.join()
    assert signal.getsignal(signal.SIGTERM) == previous
    assert answered == [200]
    out, err = capsys.readouterr()
    assert out.strip() == exports(f"http://127.0.0.1:{port}", "us-east-1")
    assert f'eval "$(watchtower-refresh fake-aws --print-env --port {port})"' in err


def test_print_env_prints_the_lines_for_the_default_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fake-aws", "--print-env"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:4599\n" in out
    assert "export AWS_SECRET_ACCESS_KEY=testing\n" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "0.0.0.0"], "--host must be 127.0.0.1"),
        (["--print-env", "--port", "0"], "--print-env needs the port"),
    ],
)
def test_refusals(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake-aws", *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_a_port_in_use_is_said_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["fake-aws", "--port", str(port)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "--port 0" in err


def test_without_moto_it_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)  # what a missing package looks like
    for module in ("watchtower_refresh.testing", "watchtower_refresh._cli.fake_aws"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(["fake-aws"]) == 3
    assert capsys.readouterr().err == (
        "watchtower-refresh fake-aws: needs the testing extra: "
        "pip install 'watchtower-refresh[testing]'\n"
    )


def test_stdout_to_a_pipe_is_closed_once_the_lines_are_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stdout, os.fdopen(read_end, "rb") as reader:
        monkeypatch.setattr(sys, "stdout", stdout)
        print("export A=1", flush=True)
        fake_aws._release_stdout()  # what lets eval "$(watchtower-refresh fake-aws &)" return
        assert reader.read() == b"export A=1\n"  # then the end of the pipe, not a hang
