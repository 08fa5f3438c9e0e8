"""log_buffer(): debug records of a unit of work ship only when it fails, in order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import logger_for
from watchtower_refresh import ConfigurationError, RefreshingCloudWatchLogHandler, log_buffer
from watchtower_refresh.testing import FakeAWS

Read = Callable[[str], list[str]]


def test_a_failing_scope_ships_its_debug_records_in_order_before_the_error(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/failing", buffer_at="DEBUG")
    log = logger_for(handler)
    with log_buffer():
        log.debug("step %d", 1)
        log.info("request started")  # above buffer_at: ships at once
        log.debug("step %d", 2)
        log.error("payment failed")
        log.debug("step %d", 3)  # held again, and let go at the end
    handler.close()
    got = messages("/app/failing")
    # The held records arrive in order, before the error; the INFO record went at once.
    assert [m for m in got if m != "request started"] == ["step 1", "step 2", "payment failed"]
    assert "request started" in got
    stats = handler.stats
    assert (stats.delivered, stats.discarded, stats.dropped) == (4, 1, {})
    assert stats.received == 4


def test_a_quiet_scope_ships_none_and_counts_them_as_discarded_not_dropped(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/quiet", buffer_at="DEBUG")
    log = logger_for(handler)
    log.debug("outside: ships")
    with log_buffer():
        for n in range(5):
            log.debug("detail %d", n)
        log.info("request done")
    log.debug("outside again")
    handler.close()
    assert messages("/app/quiet") == ["outside: ships", "request done", "outside again"]
    stats = handler.stats
    assert (stats.delivered, stats.discarded, stats.dropped_total) == (3, 5, 0)


def test_concurrent_asyncio_tasks_keep_separate_buffers(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/tasks", buffer_at="DEBUG")
    log = logger_for(handler)

    @log_buffer
    async def request(name: str, fail: bool) -> None:
        for n in range(3):
            log.debug("%s step %d", name, n)
            await asyncio.sleep(0)  # the other task logs in between
        if fail:
            log.error("%s failed", name)

    async def main() -> None:
        await asyncio.gather(request("a", fail=True), request("b", fail=False))

    asyncio.run(main())
    handler.close()
    assert messages("/app/tasks") == ["a step 0", "a step 1", "a step 2", "a failed"]
    assert handler.stats.discarded == 3


def test_threads_have_their_own_scopes(aws: FakeAWS, messages: Read, make_handler: Any) -> None:
    handler = make_handler("/app/threads", buffer_at="INFO")
    log = logger_for(handler)

    def unscoped() -> None:
        log.info("from a thread outside any scope")

    with log_buffer():
        log.info("held")
        worker = threading.Thread(target=unscoped)
        worker.start()
        worker.join()
    handler.close()
    assert messages("/app/threads") == ["from a thread outside any scope"]
    assert handler.stats.discarded == 1


def test_an_exception_that_leaves_the_scope_ships_what_it_held(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/raised", buffer_at="DEBUG")
    log = logger_for(handler)

    @log_buffer()
    def task() -> None:
        log.debug("loaded order 7")
        raise ValueError("no stock")

    with pytest.raises(ValueError, match="no stock"):
        task()
    handler.close()
    assert messages("/app/raised") == ["loaded order 7"]
    assert handler.stats.discarded == 0


def test_the_byte_cap_lets_the_oldest_go_first(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/capped", buffer_at="DEBUG", buffer_max_bytes=1024)
    log = logger_for(handler)
    with log_buffer():
        for n in range(20):
            log.debug("%02d %s", n, "x" * 97)  # 100 characters + 26 = 126 bytes held
        log.error("failed")
    handler.close()
    got = messages("/app/capped")
    assert got[-1] == "failed"
    assert [m[:2] for m in got[:-1]] == [f"{n:02d}" for n in range(12, 20)]  # 8 x 126 <= 1024
    assert handler.stats.discarded == 12
    assert handler.stats.dropped == {}


def test_held_messages_read_as_they_did_when_logged(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/frozen", buffer_at="DEBUG")
    log = logger_for(handler)
    cart = ["apple"]
    with log_buffer():
        log.debug("cart %s", cart)
        cart.append("pear")
        log.error("checkout failed")
    handler.close()
    assert messages("/app/frozen") == ["cart ['apple']", "checkout failed"]


def test_a_nested_scope_joins_the_one_it_is_in(
    aws: FakeAWS, messages: Read, make_handler: Any
) -> None:
    handler = make_handler("/app/nested", buffer_at="DEBUG")
    log = logger_for(handler)
    with log_buffer():
        log.debug("outer")
        with log_buffer():
            log.debug("inner")
        log.error("failed after the inner scope ended")
    handler.close()
    assert messages("/app/nested") == ["outer", "inner", "failed after the inner scope ended"]


@pytest.mark.parametrize(("rate", "shipped"), [(1.0, ["detail", "done"]), (0.0, ["done"])])
def test_sampled_scopes_ship_everything(
    aws: FakeAWS, messages: Read, make_handler: Any, rate: float, shipped: list[str]
) -> None:
    handler = make_handler("/app/sampled", buffer_at="DEBUG", buffer_sample_rate=rate)
    log = logger_for(handler)
    with log_buffer():
        log.debug("detail")
        log.info("done")
    handler.close()
    assert messages("/app/sampled") == shipped


def test_each_handler_holds_for_itself(aws: FakeAWS, messages: Read, make_handler: Any) -> None:
    buffering = make_handler("/app/buffering", buffer_at="DEBUG")
    plain = make_handler("/app/plain")
    log = logger_for(buffering)
    log.addHandler(plain)
    with log_buffer():
        log.debug("detail")
    buffering.close()
    plain.close()
    assert messages("/app/plain") == ["detail"]
    assert (buffering.stats.received, buffering.stats.discarded) == (0, 1)


@pytest.mark.parametrize(
    ("given", "level"),
    [("DEBUG", logging.DEBUG), ("warning", logging.WARNING), ("15", 15), (5, 5), ("off", None)],
)
def test_buffer_at_accepts_level_names_and_numbers(given: object, level: int | None) -> None:
    handler = RefreshingCloudWatchLogHandler("grp", buffer_at=given)  # type: ignore[arg-type]
    assert handler.options.buffer_at == level
    handler.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"buffer_at": "ERROR"}, "buffer_at must be a level below ERROR"),
        ({"buffer_at": "LOUD"}, "buffer_at must be a level below ERROR"),
        ({"buffer_at": "DEBUG", "buffer_max_bytes": 10}, "buffer_max_bytes"),
        ({"buffer_at": "DEBUG", "buffer_sample_rate": "1.5"}, "buffer_sample_rate"),
    ],
)
def test_invalid_buffer_options_fail_at_configuration(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RefreshingCloudWatchLogHandler("grp", **options)


def test_a_celery_task_run_is_a_scope(aws: FakeAWS, messages: Read, make_handler: Any) -> None:
    celery = pytest.importorskip("celery")

    handler = make_handler("/app/celery", buffer_at="DEBUG")
    log = logger_for(handler, "tasks")
    app = celery.Celery("orders", set_as_current=False)
    app.conf.task_always_eager = True

    @log_buffer
    def charge_order(order_id: int) -> None:
        log.debug("charging order %d", order_id)
        if order_id == 0:
            raise ValueError("no card on file")

    charge = app.task(charge_order)  # @app.task above @log_buffer, as in the recipe
    charge.delay(7)
    result = charge.delay(0)
    assert isinstance(result.result, ValueError)  # Celery keeps the failure; the scope saw it
    handler.close()
    assert messages("/app/celery") == ["charging order 0"]
    assert handler.stats.discarded == 1
