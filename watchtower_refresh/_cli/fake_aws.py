"""``watchtower-refresh fake-aws``: a local stand-in for AWS to try the handler and the CLI on.

Runs ``watchtower_refresh.testing.FakeAWS`` (moto on 127.0.0.1) until Ctrl-C or SIGTERM, and
first prints the shell lines that send boto3, the handler and this CLI to it::

    # terminal 1                        # terminal 2
    watchtower-refresh fake-aws         eval "$(watchtower-refresh fake-aws --print-env)"
                                        watchtower-refresh check --log-group /app/orders
                                        python examples/quickstart.py

or in one shell: ``eval "$(watchtower-refresh fake-aws &)"``, then ``kill`` the pid it names.
The keys printed are placeholders (``testing``): the fake AWS accepts any.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from ..testing import FakeAWS
from .check import EXIT_OK
from .config import UsageError

__all__ = ["DEFAULT_PORT", "HOST", "exports", "run"]

HOST = "127.0.0.1"
"""The only address it listens on: it accepts any keys, so nothing else may reach it."""
DEFAULT_PORT = 4599
"""A fixed port, so a second shell gets the same lines with ``--print-env``. Not LocalStack's
4566, so both can run; not moto's 5000, which macOS gives to AirPlay."""
PLACEHOLDER_KEY = "testing"

# Variables that would send a client elsewhere, or mix other credentials with the fake keys.
_UNSET = (
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def exports(endpoint_url: str, region: str) -> str:
    """The POSIX shell lines that point boto3, the handler and the CLI at ``endpoint_url``."""
    values = {
        "AWS_ENDPOINT_URL": endpoint_url,  # every service of every boto3 or botocore client
        "AWS_ACCESS_KEY_ID": PLACEHOLDER_KEY,
        "AWS_SECRET_ACCESS_KEY": PLACEHOLDER_KEY,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join([*lines, f"unset {' '.join(_UNSET)}"])


def run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Serve until Ctrl-C or SIGTERM (or, with ``--print-env``, only print); exit code 0."""
    if args.host != HOST:
        message = (
            f"--host must be {HOST}: the fake AWS accepts any keys, so it listens on loopback only"
        )
        raise UsageError(message)
    if args.print_env:
        if args.port == 0:
            message = "--print-env needs the port the fake AWS listens on, not 0"
            raise UsageError(message)
        out(exports(f"http://{HOST}:{args.port}", args.region))
        return EXIT_OK
    _check_free(args.port)
    aws = FakeAWS(port=args.port)
    stop = threading.Event()
    with _stopped_by(signal.SIGTERM, stop), aws:  # the handler first: SIGTERM must not kill it
        out(exports(aws.endpoint_url, args.region))
        _release_stdout()
        pid, port = os.getpid(), aws.endpoint_url.rsplit(":", 1)[1]
        again = "" if port == str(DEFAULT_PORT) else f" --port {port}"
        print(
            f"fake AWS (moto) on {aws.endpoint_url}, pid {pid}: any keys are accepted and "
            "everything is kept in memory.\n"
            f'In another shell: eval "$(watchtower-refresh fake-aws --print-env{again})"'
            " (or paste the lines above)\n"
            f"Stop it with Ctrl-C or: kill {pid}",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to stop
            while not stop.wait(0.5):
                pass
    print("fake AWS stopped", file=sys.stderr)
    return EXIT_OK


def _check_free(port: int) -> None:
    """Refuse a port in use with a sentence, before werkzeug prints its own and exits."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            message = (
                f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; pass --port with "
                "another port, or --port 0 for any free one"
            )
            raise UsageError(message) from None


@contextlib.contextmanager
def _stopped_by(signum: int, stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on ``signum`` instead of dying, then put the previous handler back."""

    def handle(number: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signum, handle)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _release_stdout() -> None:
    """Close stdout once the lines are out, when it is a pipe.

    ``eval "$(watchtower-refresh fake-aws &)"`` waits for the end of the pipe: the server
    keeps running, its notes go to stderr.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test or a wrapper
        return
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
