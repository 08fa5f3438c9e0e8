"""SIGTERM: delivered before the process ends as it would have, PID 1 and opt-out included.

The subprocess tests run ``apps/worker.py``, which logs numbered records and
prints each number once logged; the signal comes while it logs, and every record logged
before it must be read back from the fake AWS. The servers, pools and Celery are in
``test_servers.py``.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.conftest import logger_for
from tests.process.harness import APPS, environment, finish, started
from watchtower_refresh import (
    ConfigurationError,
    DeliveryStats,
    RefreshingCloudWatchLogHandler,
    WatchtowerRefreshWarning,
    install_sigterm_handler,
)
from watchtower_refresh._config import logging_config
from watchtower_refresh._process import pools, signals
from watchtower_refresh.testing import FakeAWS, Fault

Read = Callable[[str], list[str]]
WORKER = str(APPS / "worker.py")


# --------------------------------------------------------------------------- in-process


def test_installs_from_the_main_thread_only_and_once() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(install_sigterm_handler()))
    thread.start()
    thread.join()
    assert results == [False]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert install_sigterm_handler()
    ours = signal.getsignal(signal.SIGTERM)
    assert install_sigterm_handler()
    assert signal.getsignal(signal.SIGTERM) is ours
    assert "SIG_DFL" in repr(ours)


def test_an_ignored_sigterm_stays_ignored() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert not install_sigterm_handler()
    RefreshingCloudWatchLogHandler("app")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_handle_signals_false_leaves_sigterm_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setenv("WATCHTOWER_REFRESH_HANDLE_SIGNALS", "false")
    config = logging_config(log_group="/app/x", console=False)
    assert config["handlers"]["cloudwatch"]["handle_signals"] is False
    logging.config.dictConfig(config)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    RefreshingCloudWatchLogHandler("app", handle_signals="no")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    RefreshingCloudWatchLogHandler("app")
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL


def test_a_handler_the_application_installed_since_is_chained_to(
    aws: FakeAWS, messages: Read, only: Callable[..., None]
) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    handler = RefreshingCloudWatchLogHandler("/svc/chain", send_interval=60)
    only(handler)
    calls: list[int] = []

    def application(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)
        # what it sees: everything logged before the signal is already delivered
        calls.append(handler.stats.delivered)

    signal.signal(signal.SIGTERM, application)
    assert install_sigterm_handler()  # as the next handler made, or configure_logging, does
    logger_for(handler).info("before the signal")
    signal.raise_signal(signal.SIGTERM)  # our handler, then the application's
    assert calls == [signal.SIGTERM, 1]
    assert messages("/svc/chain") == ["before the signal"]
    handler.close()


def test_what_the_budget_leaves_is_counted_and_reported(
    aws: FakeAWS, only: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    aws.injector.add_fault(Fault(code="", action="PutLogEvents", delay=4))
    handler = RefreshingCloudWatchLogHandler("/svc/slow", send_interval=60, flush_timeout=0.5)
    only(handler)
    logger_for(handler).info("never arrives in time")
    started_at = time.monotonic()
    left = signals.settle("test", close=True)
    assert time.monotonic() - started_at < 4
    assert left == 1
    assert capsys.readouterr().err == (
        "watchtower-refresh: test: 1 record not delivered within 0.5 s, "
        "counted in stats.dropped['shutdown']\n"
    )


def test_what_the_budget_leaves_in_the_spool_is_reported_as_kept(
    aws: FakeAWS, only: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    aws.injector.add_fault(Fault(code="", action="PutLogEvents", delay=4))
    handler = RefreshingCloudWatchLogHandler(
        "/svc/slow-spooled", send_interval=60, flush_timeout=0.5, spool_dir=str(tmp_path)
    )
    only(handler)
    logger_for(handler).info("kept on disk")
    assert signals.settle("test", close=True) == 1
    assert capsys.readouterr().err == (
        "watchtower-refresh: test: 1 record not delivered within 0.5 s is kept in the "
        "spool: the next process that uses it delivers them\n"
    )
    # The put given up on still waits for its answer: let it end here, and the spool writer
    # it owes an acknowledgement close, so that nothing of this test reaches the next one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WatchtowerRefreshWarning)
        for thread in handler.threads:
            thread.join(10)
        handler.close()


def test_handle_signals_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="handle_signals must be true or false"):
        RefreshingCloudWatchLogHandler("app", handle_signals="maybe")


def test_where_python_cannot_set_signals_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> None:
        raise ValueError("signal only works in main thread of the main interpreter")

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(signal, "signal", refuse)  # as in a subinterpreter
    assert not install_sigterm_handler()
    RefreshingCloudWatchLogHandler("app")  # and the constructor does not fail
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


class Interrupted:
    """A handler asked to send while SIGTERM arrives, as Pool.terminate() sends it."""

    flush_timeout = 1.0
    stats = DeliveryStats()

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def request_flush(self) -> int:
        self.events.append("send")
        if self.events.count("send") == 1:
            signal.raise_signal(signal.SIGTERM)
        return 0

    def wait_flushed(self, target: int, deadline: float) -> bool:
        self.events.append("wait")
        return True

    def close(self) -> None:
        self.close_by(time.monotonic() + self.flush_timeout)

    def close_by(self, deadline: float) -> None:
        self.events.append("close")

    kept_in_spool = 0

    def after_fork_in_child(self) -> None:
        pass

    def held_here(self) -> bool:
        return False

    def send_synchronously(self) -> None:
        self.events.append("synchronous")


def test_a_sigterm_during_an_exit_hook_is_passed_on_once_it_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    monkeypatch.setattr(signals, "_live", lambda: [Interrupted(events)])
    signal.signal(signal.SIGTERM, lambda signum, frame: events.append("application"))
    assert install_sigterm_handler()
    # A Celery child exiting (a multiprocessing child's finalizer does the same).
    pools._on_worker_process_shutdown(sender=None, pid=os.getpid(), exitcode=0)
    # Not a second delivery inside the first (it could wait on a lock the first holds):
    # the signal waits until the hook is done, then goes its way as usual.
    assert events == ["send", "close", "send", "wait", "application"]


class Stuck(Interrupted):
    """A handler whose sender never finishes: every wait lasts longer than the budget."""

    flush_timeout = 10.0

    def __init__(self) -> None:
        super().__init__([])

    def request_flush(self) -> int:
        return 0

    def wait_flushed(self, target: int, deadline: float) -> bool:
        time.sleep(1.0)
        return False

    def close_by(self, deadline: float) -> None:
        time.sleep(self.flush_timeout)


def test_the_signal_handler_stops_waiting_for_a_stuck_delivery(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(signals, "_live", lambda: [Stuck()])
    monkeypatch.setattr(signals, "SHUTDOWN_BUDGET", 0.2)
    monkeypatch.setattr(signals, "_JOIN_MARGIN", 0.1)
    started_at = time.monotonic()
    signals._settle_in_background("signal 15", close=False)
    assert time.monotonic() - started_at < 0.9
    assert capsys.readouterr().err == (
        "watchtower-refresh: signal 15: delivery did not finish within 0.3 s; "
        "records still queued are lost\n"
    )


def test_without_threads_delivery_runs_on_the_signalled_thread(
    aws: FakeAWS, messages: Read, monkeypatch: pytest.MonkeyPatch, only: Callable[..., None]
) -> None:
    handler = RefreshingCloudWatchLogHandler("/svc/inline", send_interval=60)
    only(handler)
    logger_for(handler).info("sent from here")

    class Finalizing(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

    # Only the signal handler's threads: the fake AWS starts one per request.
    unstartable = types.SimpleNamespace(**{**vars(threading), "Thread": Finalizing})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signals, "threading", unstartable)
        signals._settle_in_background("signal 15", close=False)
    assert messages("/svc/inline") == ["sent from here"]
    handler.close()


# --------------------------------------------------------------------------- processes


def stop_while_logging(
    process: subprocess.Popen[str], kill: Callable[[], None], after: int = 300
) -> tuple[int, str]:
    """Signal the worker once it logged ``after`` records; return the last one logged then."""
    assert process.stdout is not None
    handler_line = process.stdout.readline()
    last = -1
    while last < after:
        line = process.stdout.readline()
        assert line, "the worker ended early"
        last = int(line)
    kill()
    return last, handler_line


def numbered(got: list[str]) -> set[int]:
    return {int(message.rsplit(" ", 1)[1]) for message in got if " record " in message}


@pytest.mark.parametrize(
    ("mode", "status", "application_handler_ran"),
    [
        ("plain", -signal.SIGTERM, False),  # killed by SIGTERM, as without us
        ("before", 3, True),  # the application's handler exits 3
        ("after", -signal.SIGTERM, True),  # the application's handler chains to ours
    ],
)
@pytest.mark.slow
def test_sigterm_delivers_everything_logged_before_it(
    aws: FakeAWS, messages: Read, mode: str, status: int, application_handler_ran: bool
) -> None:
    group = f"/svc/sigterm-{mode}"
    with started([sys.executable, WORKER, group, mode], environment(aws)) as process:
        last, _ = stop_while_logging(process, lambda: process.send_signal(signal.SIGTERM))
        started_at = time.monotonic()
        _, err = finish(process)
    assert time.monotonic() - started_at < signals.SHUTDOWN_BUDGET
    assert process.returncode == status, err
    got = messages(group)
    assert set(range(last + 1)) <= numbered(got)
    assert any("application handler ran" in m for m in got) == application_handler_ran
    assert " not delivered within" not in err


@pytest.mark.slow
def test_an_ignored_sigterm_is_still_ignored_by_the_program(aws: FakeAWS, messages: Read) -> None:
    group = "/svc/sigterm-ignored"
    with started([sys.executable, WORKER, group, "ignore"], environment(aws)) as process:
        _, handler_line = stop_while_logging(
            process, lambda: process.send_signal(signal.SIGTERM), after=50
        )
        out, err = finish(process)  # it goes on logging, and ends on its own after 3 s
    assert "SIG_IGN" in handler_line
    assert process.returncode == 0, err
    last = int(out.split()[-1])
    assert last > 50
    assert numbered(messages(group)) == set(range(last + 1))


@pytest.mark.slow
def test_handle_signals_false_opts_out(aws: FakeAWS) -> None:
    group = "/svc/sigterm-opt-out"
    with started([sys.executable, WORKER, group, "opt-out"], environment(aws)) as process:
        _, handler_line = stop_while_logging(
            process, lambda: process.send_signal(signal.SIGTERM), after=10
        )
        finish(process)
    assert handler_line.strip() == "sigterm <Handlers.SIG_DFL: 0>"
    assert process.returncode == -signal.SIGTERM


@pytest.mark.slow
def test_records_the_budget_cannot_deliver_are_reported_on_stderr(aws: FakeAWS) -> None:
    aws.injector.add_fault(Fault(code="", action="PutLogEvents", delay=15))
    group = "/svc/sigterm-stuck"
    env = environment(aws, FLUSH_TIMEOUT="1")
    with started([sys.executable, WORKER, group, "plain"], env) as process:
        stop_while_logging(process, lambda: process.send_signal(signal.SIGTERM), after=50)
        started_at = time.monotonic()
        _, err = finish(process)
    assert time.monotonic() - started_at < 8
    assert process.returncode == -signal.SIGTERM
    (line,) = [line for line in err.splitlines() if line.startswith("watchtower-refresh:")]
    assert line.startswith("watchtower-refresh: signal 15: ")
    assert line.endswith(" not delivered within 1 s, counted in stats.dropped['shutdown']")


@pytest.mark.slow
def test_records_the_budget_leaves_in_the_spool_are_reported_as_kept(
    aws: FakeAWS, messages: Read, tmp_path: Path
) -> None:
    # With a spool they are not lost: the line must not say so, and the next process that
    # uses the spool delivers them.
    stuck = aws.injector.add_fault(Fault(code="", action="PutLogEvents", delay=15))
    group = "/svc/sigterm-spooled"
    spool = tmp_path / "spool"
    spool.mkdir()
    env = environment(aws, FLUSH_TIMEOUT="1", SPOOL_DIR=str(spool))
    with started([sys.executable, WORKER, group, "plain"], env) as process:
        last, _ = stop_while_logging(process, lambda: process.send_signal(signal.SIGTERM), 50)
        _, err = finish(process)
    assert process.returncode == -signal.SIGTERM
    (line,) = [line for line in err.splitlines() if line.startswith("watchtower-refresh:")]
    assert re.fullmatch(
        r"watchtower-refresh: signal 15: \d+ records? not delivered within 1 s (are|is) kept in "
        r"the spool: the next process that uses it delivers them",
        line,
    ), line
    aws.injector.remove_fault(stuck)
    deliver = [sys.executable, "-m", "watchtower_refresh", "spool", "--dir", str(spool)]
    deliver += ["--deliver", "--log-group", group]
    with started(deliver, env) as replay:
        _, err = finish(replay)
    assert replay.returncode == 0, err
    assert set(range(last + 1)) <= numbered(messages(group))


def _can_unshare() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not _can_unshare(), reason="no PID namespace here (unshare --pid needs CAP_SYS_ADMIN)"
)
def test_pid1_of_a_container_delivers_and_exits_143(aws: FakeAWS, messages: Read) -> None:
    # A container's CMD ["python", ...]: PID 1, to which SIGTERM's default action does not
    # apply. Without us it would ignore SIGTERM until the runtime's SIGKILL.
    group = "/svc/sigterm-pid1"
    argv = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, WORKER, group, "plain"]

    def kill_pid1() -> None:
        (pid,) = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        os.kill(int(pid), signal.SIGTERM)  # as docker stop does: to PID 1 only

    with started(argv, environment(aws)) as process:
        last, _ = stop_while_logging(process, kill_pid1)
        _, err = finish(process)
    assert process.returncode == 143, err  # what tini or docker run --init would report
    assert set(range(last + 1)) <= numbered(messages(group))


def test_settle_with_no_handlers_is_a_no_op(only: Callable[..., Any]) -> None:
    only()
    assert signals.settle("test", close=True) == 0


def test_a_sigterm_while_the_main_thread_holds_a_handlers_lock_delivers_at_once(
    aws: FakeAWS, messages: Read, monkeypatch: pytest.MonkeyPatch, only: Callable[..., None]
) -> None:
    # Our handler runs on the main thread between two of its bytecodes: inside emit()'s slow
    # path or close(), around a thread start, it holds the ledger's lock. A delivery thread
    # needing that lock used to wait out the whole budget, then the records were lost.
    monkeypatch.setattr(signals, "SHUTDOWN_BUDGET", 2.0)
    handler = RefreshingCloudWatchLogHandler("/svc/held", send_interval=60, flush_timeout=2)
    only(handler)
    logger_for(handler).info("pending")
    with handler._pipeline.ledger.lock:
        signals._settle_in_background("signal 15", close=True)
        stats = handler.stats
    assert (stats.delivered, stats.queued, stats.dropped) == (1, 0, {})
    assert messages("/svc/held") == ["pending"]


def test_a_sigterm_while_the_main_thread_holds_loggings_lock_closes_every_handler(
    aws: FakeAWS, messages: Read, monkeypatch: pytest.MonkeyPatch, only: Callable[..., None]
) -> None:
    # Interrupted inside getLogger() or dictConfig, which hold logging's lock: a delivery
    # thread waited for it until the budget was gone, and the second handler was never
    # closed. Now both are closed from the signalled thread; the senders deliver once the
    # lock is free.
    monkeypatch.setattr(signals, "SHUTDOWN_BUDGET", 2.0)
    handlers = [
        RefreshingCloudWatchLogHandler(f"/svc/llock-{n}", send_interval=60, flush_timeout=2)
        for n in (1, 2)
    ]
    only(*handlers)
    for n, handler in enumerate(handlers, 1):
        logger_for(handler, f"llock{n}").info("pending %d", n)
    started_at = time.monotonic()
    with logging._lock:  # type: ignore[attr-defined]
        signals._settle_in_background("signal 15", close=True)
    assert time.monotonic() - started_at < 2.0  # not the budget spent waiting for the lock
    for n, handler in enumerate(handlers, 1):
        assert handler.shutting_down  # closed
        assert handler.flush(timeout=5)
        assert messages(f"/svc/llock-{n}") == [f"pending {n}"]


# --------------------------------------------------------------------------- forked children


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Run the fork hooks here, as in a parent that forks and the child that follows."""
    monkeypatch.setattr(signals, "_wanted", True)
    monkeypatch.setattr(signals, "_check_pending", False)

    def fork() -> None:
        signals._before_fork()
        signals._after_fork_in_child()

    return fork


def test_a_child_whose_sigterm_was_reset_gets_ours_back_at_its_first_delivery(
    aws: FakeAWS, messages: Read, forked: Callable[[], None], only: Callable[..., None]
) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    handler = RefreshingCloudWatchLogHandler("/svc/reset", send_interval=60)
    only(handler)
    forked()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as gunicorn's worker does after the fork
    logger_for(handler).info("first")
    assert "SIG_DFL" in repr(signal.getsignal(signal.SIGTERM))
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    handler.close()


def test_a_server_that_took_sigterm_over_after_the_fork_is_chained_to_and_nothing_waits(
    aws: FakeAWS, messages: Read, forked: Callable[[], None], only: Callable[..., None]
) -> None:
    # uvicorn in gunicorn's worker: its handler over the default, which it restores and
    # raises again once it has stopped; records logged while it stops must not wait.
    handler = RefreshingCloudWatchLogHandler("/svc/taken", send_interval=60)
    only(handler)
    logger = logger_for(handler)
    forked()
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    logger.info("served")
    signal.raise_signal(signal.SIGTERM)
    assert stopping == [signal.SIGTERM]  # the server's handler still runs
    assert messages("/svc/taken") == ["served"]  # delivered before it
    logger.info("while stopping")
    assert handler.stats.delivered == 2  # sent before the logging call returned
    assert messages("/svc/taken") == ["served", "while stopping"]
    handler.close()


def test_a_child_that_put_ours_back_itself_keeps_batching_while_stopping(
    aws: FakeAWS, messages: Read, forked: Callable[[], None], only: Callable[..., None]
) -> None:
    # The README's post_worker_init hook: uvicorn then installs its own over ours, and
    # restores ours when it stops.
    handler = RefreshingCloudWatchLogHandler("/svc/hooked", send_interval=60)
    only(handler)
    forked()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # gunicorn's worker, after the fork
    assert install_sigterm_handler()  # the hook

    def server(signum: int, frame: FrameType | None) -> None:
        pass

    signal.signal(signal.SIGTERM, server)
    logger_for(handler).info("served")
    assert signal.getsignal(signal.SIGTERM) is server  # left as it is
    handler.close()
    assert messages("/svc/hooked") == ["served"]


def test_a_child_as_its_parent_left_it_is_left_alone(
    forked: Callable[[], None], only: Callable[..., None]
) -> None:
    handler = RefreshingCloudWatchLogHandler("/svc/same", send_interval=60)
    only(handler)

    def application(signum: int, frame: FrameType | None) -> None:
        pass

    signal.signal(signal.SIGTERM, application)
    forked()
    signals.check_sigterm_after_fork()
    assert signal.getsignal(signal.SIGTERM) is application
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    forked()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignored on purpose since the fork
    signals.check_sigterm_after_fork()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_a_reset_seen_from_another_thread_is_reported_once(
    forked: Callable[[], None], capsys: pytest.CaptureFixture[str]
) -> None:
    assert install_sigterm_handler()  # the parent's, at the fork
    forked()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for _ in range(2):
        thread = threading.Thread(target=signals.check_sigterm_after_fork)
        thread.start()
        thread.join()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    err = capsys.readouterr().err
    assert err.count("watchtower-refresh: SIGTERM's handler was changed in process") == 1
    assert "post_worker_init" in err
