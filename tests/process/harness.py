"""Running real programs against the fake AWS and stopping them as their operators would.

Shared by ``test_signals.py``, ``test_pools.py`` and ``test_servers.py``. Every process started
here runs in a session of its own and is killed with its whole group when the test ends,
whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.conftest import REGION
from watchtower_refresh.testing import FakeAWS

APPS = Path(__file__).parent / "apps"
BIN = Path(sys.executable).parent


def environment(aws: FakeAWS, **extra: str) -> dict[str, str]:
    """The test's environment, every boto3 client sent to the fake AWS, plus ``extra``."""
    return {**os.environ, **aws.environment(REGION), "PYTHONPATH": str(APPS), **extra}


@contextlib.contextmanager
def started(
    argv: Sequence[str], env: dict[str, str], cwd: Path = APPS
) -> Iterator[subprocess.Popen[str]]:
    """Start ``argv`` in a new session; kill its process group on the way out."""
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def finish(process: subprocess.Popen[str], timeout: float = 40.0) -> tuple[str, str]:
    """Wait for ``process`` to end on its own; return its stdout and stderr."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
        raise AssertionError(f"still running after {timeout} s; stderr:\n{err[-3000:]}") from None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Client:
    """Sends ``GET {prefix}N`` for N = 0, 1, ... from a thread until stopped.

    ``answered_before(t)`` is the set of N whose answer came back before ``t``: those
    requests were logged before then. ``servers`` holds the ``X-Pid`` header of every
    answer: the worker processes that served.
    """

    def __init__(self, url_prefix: str) -> None:
        self._prefix = url_prefix
        self._answered: list[tuple[int, float]] = []
        self.servers: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def wait_until_up(self, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Wait until the server answers (request "ready"), or fail with its stderr."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self._prefix}999999", timeout=2).read()
                return
            if process.poll() is not None or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                _, err = process.communicate()
                raise AssertionError(f"the server did not come up:\n{err[-3000:]}")
            time.sleep(0.1)

    def start(self) -> None:
        """Start sending requests."""
        self._thread.start()

    def wait_for(self, count: int, servers: int = 0, timeout: float = 30.0) -> None:
        """Wait until ``count`` requests were answered, by ``servers`` processes at least
        (counted by their ``X-Pid`` header, which only the apps in ``apps`` send).

        One worker of several can answer every request while another is still importing
        the application: a signal then stops that one before it ever serves.
        """
        deadline = time.monotonic() + timeout
        while len(self._answered) < count or len(self.servers) < servers:
            assert time.monotonic() < deadline, (
                f"only {len(self._answered)} answers, from processes {sorted(self.servers)}"
            )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop sending."""
        self._stop.set()
        self._thread.join(10)

    def answered_before(self, moment: float) -> set[int]:
        """Requests answered before ``moment`` (``time.monotonic()``)."""
        return {n for n, at in list(self._answered) if at < moment}

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self._prefix}{n}", timeout=2) as answer,
            ):
                answer.read()
                self._answered.append((n, time.monotonic()))
                if answer.headers["X-Pid"]:
                    self.servers.add(int(answer.headers["X-Pid"]))
            n += 1
