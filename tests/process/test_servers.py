"""Servers, pools and Celery, stopped as their operators stop them: nothing logged is lost.

Each test starts the real program against the fake AWS with the default ``send_interval``
(5 s), sends the real signal while records are being logged, and asserts that every record
logged before it is read back, with the exit status the program has without our handler.
The programs live in ``apps/``.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.process.harness import APPS, BIN, Client, environment, finish, free_port, started
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]
EXAMPLES = Path(__file__).parents[2] / "examples"

pytestmark = pytest.mark.slow


def requests_in(got: list[str], word: str = "request") -> set[int]:
    """Numbers N of the ``<word> N`` records among ``got``."""
    pattern = re.compile(rf"\b{word} (\d+)\b")
    return {int(match[1]) for match in map(pattern.search, got) if match}


class Stopped(NamedTuple):
    """How a server ended: what it answered before the signal, and who answered."""

    answered: set[int]
    returncode: int
    err: str
    servers: set[int]
    """Process ids of the workers that answered (``X-Pid``)."""


def serve_and_stop(
    argv: list[str], env: dict[str, str], url_prefix: str, cwd: Path = APPS, workers: int = 0
) -> Stopped:
    """Run a server, request ``url_prefix + N`` until 60 answers and ``workers`` processes
    answered (``web.py`` says which in ``X-Pid``), SIGTERM it, let it end.
    """
    with started(argv, env, cwd) as process:
        client = Client(url_prefix)
        client.wait_until_up(process)
        client.start()
        try:
            client.wait_for(60, servers=workers)
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)  # to the server's first process only
            _, err = finish(process)
        finally:
            client.stop()
    answered = client.answered_before(signalled_at) | {999999}
    return Stopped(answered, process.returncode, err, client.servers)


def uvicorn_log_config(tmp_path: Path, group: str) -> str:
    """The README's recipe: uvicorn's --log-config names the handler."""
    path = tmp_path / "log_config.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "cloudwatch": {
                        "()": "watchtower_refresh.RefreshingCloudWatchLogHandler",
                        "log_group_name": group,
                    }
                },
                "root": {"level": "INFO", "handlers": ["cloudwatch"]},
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(("workers", "status"), [(1, -signal.SIGTERM), (2, 0)])
def test_uvicorn(aws: FakeAWS, messages: Read, tmp_path: Path, workers: int, status: int) -> None:
    group = f"/svc/uvicorn-{workers}"
    port = free_port()
    argv = [str(BIN / "uvicorn"), "web:asgi", "--port", str(port), "--workers", str(workers)]
    argv += ["--log-config", uvicorn_log_config(tmp_path, group)]
    stopped = serve_and_stop(
        argv, environment(aws), f"http://127.0.0.1:{port}/log/", workers=workers
    )
    assert stopped.returncode == status, stopped.err  # one worker: killed by the re-raised SIGTERM
    got = messages(group)
    assert stopped.answered <= requests_in(got)
    # What uvicorn and the application log while they stop arrives too, in every worker.
    assert requests_in(got, "lifespan shutdown in") == stopped.servers, stopped.err
    assert sum("Finished server process" in m for m in got) == workers


GUNICORN_CASES = {
    "sync": ["web:wsgi"],
    "sync-preload": ["web:wsgi", "--preload"],
    "uvicorn-worker": ["web:asgi", "-k", "uvicorn.workers.UvicornWorker"],
    # With --preload that worker resets SIGTERM after the fork: the README's hook puts our
    # handler back.
    "uvicorn-worker-preload": [
        "web:asgi",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "--preload",
        "-c",
        "gunicorn_conf.py",
    ],
}


@pytest.mark.parametrize("case", GUNICORN_CASES)
def test_gunicorn(aws: FakeAWS, messages: Read, tmp_path: Path, case: str) -> None:
    group = f"/svc/gunicorn-{case}"
    port = free_port()
    argv = [str(BIN / "gunicorn"), *GUNICORN_CASES[case], "-b", f"127.0.0.1:{port}", "-w", "2"]
    env = environment(
        aws,
        CONFIGURE_IN_APP="1",  # configure_logging() when the app module is imported
        WATCHTOWER_REFRESH_LOG_GROUP=group,
        HOME=str(tmp_path),  # gunicorn's control socket goes there
        XDG_RUNTIME_DIR=str(tmp_path),
    )
    stopped = serve_and_stop(argv, env, f"http://127.0.0.1:{port}/log/", workers=2)
    assert stopped.returncode == 0, stopped.err
    got = messages(group)
    assert stopped.answered <= requests_in(got)
    if "uvicorn" in case:
        # What each worker logs while it stops arrives too, from both workers.
        assert requests_in(got, "lifespan shutdown in") == stopped.servers, stopped.err


def test_gunicorn_preload_uvicorn_worker_without_a_hook(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    # The worker resets SIGTERM after the fork, and uvicorn, after its graceful shutdown,
    # restores that default and raises SIGTERM again: without the README's hook, what the
    # workers had queued and what they logged while stopping used to be lost, silently.
    group = "/svc/gunicorn-uvicorn-preload-no-hook"
    logged = tmp_path / "logged"
    logged.mkdir()
    port = free_port()
    argv = [str(BIN / "gunicorn"), "web:asgi", "-k", "uvicorn.workers.UvicornWorker"]
    argv += ["--preload", "-b", f"127.0.0.1:{port}", "-w", "2"]
    env = environment(
        aws,
        CONFIGURE_IN_APP="1",
        WATCHTOWER_REFRESH_LOG_GROUP=group,
        STOPPING_RECORDS="50",
        LOGGED_DIR=str(logged),
        HOME=str(tmp_path),
        XDG_RUNTIME_DIR=str(tmp_path),
    )
    stopped = serve_and_stop(argv, env, f"http://127.0.0.1:{port}/log/", workers=2)
    assert stopped.returncode == 0, stopped.err
    written = [path.read_text().splitlines() for path in logged.iterdir()]
    assert {int(path.name) for path in logged.iterdir()} == stopped.servers
    every = [message for lines in written for message in lines]
    assert sum(m.startswith("stopping ") for m in every) == 100  # 50 in each worker
    got = messages(group)
    arrived = {line.partition(" INFO app ")[2] for line in got}  # configure_logging's format
    assert sorted(set(every) - arrived) == [], stopped.err
    assert stopped.answered <= requests_in(got)
    assert "watchtower-refresh:" not in stopped.err


DJANGO_SITE = EXAMPLES / "django_site"
DJANGO_GROUP = "/app/orders-django"  # settings.py
DJANGO_ROLE = "arn:aws:iam::123456789012:role/app-logs"


def django_environment(aws: FakeAWS, **extra: str) -> dict[str, str]:
    """The example project's settings, its handler sent to the fake AWS."""
    return environment(
        aws,
        PYTHONPATH=str(DJANGO_SITE),
        DJANGO_SETTINGS_MODULE="settings",
        APP_LOG_ROLE_ARN=DJANGO_ROLE,
        **extra,
    )


def test_django_runserver_noreload(aws: FakeAWS, messages: Read) -> None:
    # One process, stopped as any other: delivered, then ended by SIGTERM.
    port = free_port()
    argv = [str(BIN / "django-admin"), "runserver", "--noreload", f"127.0.0.1:{port}"]
    stopped = serve_and_stop(
        argv, django_environment(aws), f"http://127.0.0.1:{port}/orders/", cwd=DJANGO_SITE
    )
    assert stopped.returncode == -signal.SIGTERM, stopped.err
    assert stopped.answered <= requests_in(messages(DJANGO_GROUP), "order")


def test_django_runserver_autoreloader_leaves_the_rest_in_the_spool(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    # With the autoreloader, Django's own SIGTERM handler in the parent (sys.exit(0)) makes
    # subprocess.run kill the serving child with SIGKILL: nothing of ours runs in the child,
    # and no hook of Django's runs in between. What it had not sent stays in the spool, for
    # the operator's `spool --deliver` (or the next runserver) to deliver.
    spool = tmp_path / "spool"
    spool.mkdir()
    env = django_environment(aws, APP_LOG_SPOOL_DIR=str(spool))
    port = free_port()
    argv = [str(BIN / "django-admin"), "runserver", f"127.0.0.1:{port}"]
    stopped = serve_and_stop(argv, env, f"http://127.0.0.1:{port}/orders/", cwd=DJANGO_SITE)
    assert stopped.returncode == 0, stopped.err  # Django's sys.exit(0), as without us

    deliver = [str(BIN / "watchtower-refresh"), "spool", "--dir", str(spool), "--deliver"]
    deliver += ["--log-group", DJANGO_GROUP, "--role-arn", DJANGO_ROLE, "--json"]
    with started(deliver, env) as process:
        out, err = finish(process)
    assert process.returncode == 0, err
    assert json.loads(out)["replayed"] > 0  # the killed child's records, from its spool
    assert stopped.answered <= requests_in(messages(DJANGO_GROUP), "order")


@pytest.mark.parametrize("kind", ["multiprocessing-with", "billiard-with", "billiard-close"])
def test_pool_workers(aws: FakeAWS, messages: Read, kind: str) -> None:
    group = f"/svc/pool-{kind}"
    argv = [sys.executable, str(APPS / "pools.py"), group, kind, "150"]
    with started(argv, environment(aws)) as process:
        out, err = finish(process)
    assert process.returncode == 0, err
    assert out.strip() == "150"
    got = messages(group)
    assert requests_in(got, "item") == set(range(150)), err
    assert len(got) == 150


@pytest.mark.parametrize("recycle", [False, True], ids=["warm-shutdown", "max-tasks-per-child"])
def test_celery_prefork(aws: FakeAWS, messages: Read, tmp_path: Path, recycle: bool) -> None:
    group = f"/svc/celery-{'recycle' if recycle else 'warm'}"
    done = tmp_path / "done"
    env = environment(
        aws,
        BROKER_DIR=str(tmp_path),
        DONE_FILE=str(done),
        WATCHTOWER_REFRESH_LOG_GROUP=group,
    )
    with started([sys.executable, "tasks.py", "150"], env) as sender:
        _, err = finish(sender)
    assert sender.returncode == 0, err
    argv = [str(BIN / "celery"), "-A", "tasks", "worker", "-P", "prefork", "-c", "2"]
    argv += ["--loglevel", "INFO"]
    if recycle:
        argv += ["--max-tasks-per-child", "25"]

    def finished() -> int:
        return len(done.read_text().split()) if done.exists() else 0

    with started(argv, env) as worker:
        deadline = time.monotonic() + 60
        # Warm shutdown while tasks run; recycling: once every task ran in some child.
        while finished() < (150 if recycle else 40) and worker.poll() is None:
            assert time.monotonic() < deadline, f"{finished()} tasks ran"
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        _, err = finish(worker)
    assert worker.returncode == 0, err
    ran = {int(n) for n in done.read_text().split()}
    assert len(ran) >= (150 if recycle else 40)
    assert ran <= requests_in(messages(group), "task")
