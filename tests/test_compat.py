"""Each private API of another library that the handler relies on, checked as it is used.

An upgrade that breaks one of these fails here, loudly, instead of degrading delivery.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing.util
import threading

import boto3
import botocore.session
import watchtower
import werkzeug.serving
from botocore.credentials import RefreshableCredentials
from botocore.loaders import create_loader

from watchtower_refresh import _compat


def test_logging_lock_tells_whether_this_thread_holds_it() -> None:
    assert not _compat.holds_logging_lock()
    with logging._lock:  # type: ignore[attr-defined]
        assert _compat.holds_logging_lock()
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(_compat.holds_logging_lock()))
        other.start()
        other.join()
        assert seen == [False]
    assert not _compat.holds_logging_lock()


def test_a_handlers_lock_tells_whether_this_thread_holds_it() -> None:
    lock = logging.Handler().lock  # what the handler's and the ledger's locks are
    assert not _compat.holds_lock(lock)
    with lock:  # type: ignore[union-attr]
        assert _compat.holds_lock(lock)
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(_compat.holds_lock(lock)))
        other.start()
        other.join()
        assert seen == [False]
    assert not _compat.holds_lock(lock)
    assert not _compat.holds_lock(None)


def test_watchtower_still_has_its_json_default() -> None:
    assert callable(getattr(watchtower, "_json_serialize_default", None))
    default = _compat.watchtower_json_default()
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert default(moment) == moment.isoformat()
    assert default({1}) == "{1}"


def test_the_fallback_json_default_follows_the_same_rule() -> None:
    moment = datetime.date(2026, 1, 2)
    assert _compat._json_default(moment) == "2026-01-02"
    assert _compat._json_default(b"x") == "b'x'"


def test_logging_formatters_still_keep_their_format_string_where_we_read_it() -> None:
    assert _compat.format_string(logging.Formatter("%(trace_id)s %(message)s")) == (
        "%(trace_id)s %(message)s"
    )
    assert _compat.format_string(logging.Formatter("{message}", style="{")) == "{message}"
    assert _compat.format_string(logging.Formatter()) == "%(message)s"


def test_multiprocessing_still_offers_its_after_fork_registry() -> None:
    assert callable(getattr(multiprocessing.util, "register_after_fork", None))
    assert callable(getattr(multiprocessing.util, "Finalize", None))

    class Token:
        pass

    token = Token()
    assert _compat.register_multiprocessing_after_fork("multiprocessing.util", token, print)
    assert not _compat.register_multiprocessing_after_fork("no.such.module", token, print)


def test_logging_renews_each_handlers_lock_after_a_fork() -> None:
    assert callable(getattr(logging.Handler, "_at_fork_reinit", None))
    handler = logging.Handler()
    before = handler.lock
    _compat.handler_at_fork_reinit(handler)
    assert handler.lock is not None
    with handler.lock:  # usable, and not the one a parent's thread might hold
        pass
    del before


def test_refreshable_credentials_still_keep_their_expiry_where_we_read_it() -> None:
    expires = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    credentials = RefreshableCredentials.create_from_metadata(
        {
            "access_key": "AKIAEXAMPLE",
            "secret_key": "not-a-secret",
            "token": "not-a-token",
            "expiry_time": expires.isoformat(),
        },
        refresh_using=dict,
        method="test",
    )
    assert _compat.credential_expiry(credentials) == expires
    assert _compat.credential_expiry(object()) is None


def test_watchtowers_submit_batch_is_still_where_an_override_is_told_apart() -> None:
    # watchtower's private _submit_batch: a subclass that overrides it gets the batches.
    assert callable(getattr(watchtower.CloudWatchLogHandler, "_submit_batch", None))

    class Plain(logging.Handler):
        _submit_batch = watchtower.CloudWatchLogHandler._submit_batch

    class Overriding(logging.Handler):
        def _submit_batch(self, batch: list[object], log_stream_name: str) -> None:
            return None

    assert _compat.overridden_submit_batch(Plain()) is None
    assert _compat.overridden_submit_batch(Overriding()) is not None


def test_a_shared_loaders_search_paths_are_edited_in_place() -> None:
    loader = create_loader()
    default = list(loader.search_paths)
    assert loader.search_paths is loader.search_paths  # its own list, not a copy
    core = botocore.session.Session()
    core.register_component("data_loader", loader)
    for _ in range(3):  # each boto3.Session appends boto3's data directory once more
        boto3.Session(botocore_session=core)
    boto3_data = loader.search_paths[len(default)]
    assert loader.search_paths == [*default, boto3_data, boto3_data, boto3_data]
    _compat.drop_repeated_search_paths(loader)
    assert loader.search_paths == [*default, boto3_data]
    _compat.drop_repeated_search_paths(object())  # no search paths at all: nothing to do


def test_moto_private_names_still_exist() -> None:
    # moto.moto_server.werkzeug_app: DomainDispatcherApplication, create_backend_app and
    # MotoRequestHandler are what moto's own ThreadedMotoServer is built from.
    app = _compat.moto_wsgi_app()
    assert callable(app)
    handler = _compat.moto_request_handler()
    assert issubclass(handler, werkzeug.serving.WSGIRequestHandler)
