"""multiprocessing and billiard children, pool workers and Celery's prefork children, in this
process; the real pools and Celery are run in ``test_servers.py``."""

from __future__ import annotations

import os
import signal
import sys
import types
from collections.abc import Callable

import pytest

from tests.conftest import logger_for
from watchtower_refresh import RefreshingCloudWatchLogHandler, install_sigterm_handler
from watchtower_refresh._process import pools, signals
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]


def test_celery_child_exit_closes_the_handlers(
    aws: FakeAWS, messages: Read, only: Callable[..., None]
) -> None:
    celery_signals = pytest.importorskip("celery.signals")
    handler = RefreshingCloudWatchLogHandler("/svc/celery", send_interval=60)
    only(handler)
    logger_for(handler).info("task done")
    celery_signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert handler.stats.delivered == 1
    assert messages("/svc/celery") == ["task done"]


def test_pool_workers_send_each_record_before_the_logging_call_returns(
    monkeypatch: pytest.MonkeyPatch, only: Callable[..., None]
) -> None:
    pytest.importorskip("billiard.process")
    import multiprocessing

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    handler = RefreshingCloudWatchLogHandler("/svc/pool-worker", send_interval=60)
    only(handler)
    assert install_sigterm_handler()
    ours = signal.getsignal(signal.SIGTERM)
    monkeypatch.delitem(sys.modules, "celery.concurrency.prefork", raising=False)
    pools._before_fork()  # as the parent forks
    pools._prepare_child()  # here: neither kind of pool worker
    seen = [(handler.use_queues, signal.getsignal(signal.SIGTERM) is ours)]
    monkeypatch.setattr(pools, "_billiard_parent", object())  # a billiard worker
    pools._prepare_child()
    seen.append((handler.use_queues, signal.getsignal(signal.SIGTERM) is ours))
    assert seen == [(True, True), (False, False)]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # what was there before us
    # A multiprocessing pool worker, by the name Pool gives it.
    monkeypatch.setattr(pools, "_billiard_parent", None)
    handler.use_queues = True
    monkeypatch.setattr(multiprocessing.current_process(), "name", "ForkPoolWorker-1")
    pools._prepare_child()
    assert not handler.use_queues
    signals._after_fork_in_child()
    handler.close()


def test_celery_is_hooked_only_once_the_application_imported_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "celery.signals", raising=False)
    monkeypatch.delitem(sys.modules, "celery", raising=False)
    pools._hook_celery(may_import=True)
    assert "celery" not in sys.modules  # not imported by us
    monkeypatch.setitem(sys.modules, "celery", types.ModuleType("celery"))  # not Celery
    pools._hook_celery(may_import=True)
    assert "celery.signals" not in sys.modules
    pools._hook_celery(may_import=False)


def test_a_pool_child_keeps_the_sigterm_its_pool_gives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "_wanted", True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signals._before_fork()
    signals._after_fork_in_child()
    pools._prepare_child()  # multiprocessing's after-fork registry, in any of its children
    signals.check_sigterm_after_fork()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_before_any_handler_is_made_a_fork_hooks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[str] = []
    monkeypatch.setattr(pools, "_hooked", False)
    monkeypatch.setattr(pools, "_hook_multiprocessing", lambda: hooked.append("pools"))
    pools._before_fork()
    assert hooked == []
    monkeypatch.setattr(pools, "_hooked", True)
    monkeypatch.setattr(pools, "_hook_celery", lambda may_import: hooked.append("celery"))
    pools._before_fork()
    assert hooked == ["pools", "celery"]
