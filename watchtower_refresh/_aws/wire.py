"""PutLogEvents with a request body built here, sent through botocore's own pipeline.

botocore's request serializer walks the operation's shape for every event: for a
10,000-event put it costs several times the rest of the call (signing, HTTP) together. The
body of this one operation is simple JSON, so ``put_events`` builds it with the standard
library, byte for byte what botocore's ``JSONSerializer`` would produce (``json.dumps``
defaults: ``", "`` and ``": "`` separators, non-ASCII escaped as ``\\uXXXX``), and hands
it to botocore at a documented event:

1. ``client.put_log_events(logGroupName=..., logStreamName=..., logEvents=[])``: botocore
   serializes an empty list (cheap; the handler's clients skip parameter validation),
   resolves the endpoint and fires ``before-call.cloudwatch-logs.PutLogEvents``.
2. Our ``before-call`` hook checks that the serialized request is exactly the JSON we
   expect for those names, then puts our body in ``request_dict["body"]``. Everything after
   it is botocore's: compression and checksums if configured, signing (the SigV4 payload
   hash is computed from our body), credential refresh, retries, its HTTP pool, parsing
   the answer and raising the same exceptions.
3. If the seam is not what we expect (the hook never fires, or the serialized request has
   another shape), nothing is sent with the empty list: a guard at ``before-send`` stops
   it, and the events go through the ordinary ``put_log_events`` call instead, for this
   client from then on.

The ``entity`` parameter, when given, goes in our body only (after ``logEvents``, as
botocore would serialize it); the placeholder call never carries it.

The body waiting for the hook lives in a thread-local: botocore runs a call's events in
the calling thread, so several threads may send at once on one client.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .._process import at_fork

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import PutLogEventsResponseTypeDef

__all__ = ["after_fork_in_child", "build_body", "install", "put_events", "wired"]

_OPERATION = "PutLogEvents"
_HOOK_ID = "watchtower-refresh-wire-body"
_GUARD_ID = "watchtower-refresh-wire-guard"
_CONTENT_TYPE = "application/x-amz-json-1.1"
_EVENT_JSON = '{"timestamp": %d, "message": %s}'


class _SeamChanged(Exception):
    """botocore did not hand us the request we expected: send the ordinary way."""


class _Pending(threading.local):
    # Class attributes are the defaults every thread starts with.
    body: bytes | None = None
    """Our body, waiting for this thread's next PutLogEvents ``before-call``."""
    expected: bytes | None = None
    """What botocore serializes for the placeholder call; None outside ``put_events``."""
    applied = False
    """Whether the hook put ``body`` in the request of the call in progress."""


_pending = _Pending()
_installed: weakref.WeakSet[Any] = weakref.WeakSet()  # clients whose hooks are registered
_fallback: weakref.WeakSet[Any] = weakref.WeakSet()  # clients sent to the ordinary way
_lock = threading.Lock()


def after_fork_in_child() -> None:
    """Renew the lock that guards hook installation in a forked child.

    The child must not inherit the lock held by a thread it does not have. Registered with
    the process layer's ``at_fork`` below.
    """
    global _lock
    _lock = threading.Lock()


at_fork(after_in_child=after_fork_in_child)


def build_body(
    group: str,
    stream: str,
    events: Sequence[Sequence[Any]],
    *,
    fields: tuple[int, int] = (0, 1),
    entity: Mapping[str, Mapping[str, str]] | None = None,
) -> bytes:
    """Return the PutLogEvents JSON body botocore would send for these events.

    Args:
        group: Log group name.
        stream: Log stream name.
        events: ``(timestamp, message)`` pairs in the order to send, the timestamp an ``int``
            in milliseconds since the epoch, the message a ``str``; or longer tuples, with
            ``fields`` saying where those two are (the handler's events, without a copy).
        fields: Positions of the timestamp and the message in each event.
        entity: The ``entity`` parameter (``keyAttributes``, ``attributes``), or None.

    Returns:
        The UTF-8 (in fact ASCII) JSON body, equal to botocore's serializer output for
        ``logGroupName``, ``logStreamName``, ``logEvents`` and ``entity`` given in that order.
    """
    enc = encode_basestring_ascii
    ts, msg = fields
    # %d keeps the JSON an integer even for an int subclass whose str() is not a number.
    # No Python-level step per event, and one % for the whole list: a % per event cost a
    # fifth more.
    stamps = map(itemgetter(ts), events)
    messages = map(enc, map(itemgetter(msg), events))
    values = tuple(chain.from_iterable(zip(stamps, messages, strict=True)))
    listed = ", ".join(repeat(_EVENT_JSON, len(values) // 2)) % values
    names = f'"logGroupName": {enc(group)}, "logStreamName": {enc(stream)}'
    # Built once per put: a few hundred bytes at most, nothing per event.
    tail = f', "entity": {json.dumps(entity)}' if entity else ""
    return f'{{{names}, "logEvents": [{listed}]{tail}}}'.encode("ascii")


def _before_call(params: dict[str, Any], **_: Any) -> None:
    """botocore's ``before-call`` for PutLogEvents: swap in the body ``put_events`` built."""
    body = _pending.body
    if body is None:  # an ordinary put_log_events on this client: not ours to touch
        return
    _pending.body = None  # one call only, whatever happens next
    headers = params.get("headers") or {}
    if (
        params.get("body") != _pending.expected
        or headers.get("Content-Type") != _CONTENT_TYPE
        or headers.get("X-Amz-Target", "").rpartition(".")[2] != _OPERATION
    ):
        message = "PutLogEvents was serialized differently than expected"
        raise _SeamChanged(message)
    params["body"] = body
    _pending.applied = True


def _before_send(**_: Any) -> None:
    """botocore's ``before-send``: never send the placeholder's empty list of events."""
    if _pending.expected is not None and not _pending.applied:
        message = "the PutLogEvents body was not replaced before sending"
        raise _SeamChanged(message)


def install(client: CloudWatchLogsClient) -> None:
    """Register the body hook and the send guard on ``client``'s events; idempotent.

    ``put_events`` calls it; calling it ahead of time only moves the cost. Thread-safe.
    """
    if client in _installed:
        return
    with _lock:
        if client in _installed:
            return
        events = client.meta.events
        service = client.meta.service_model.service_id.hyphenize()
        events.register(f"before-call.{service}.{_OPERATION}", _before_call, unique_id=_HOOK_ID)
        events.register(f"before-send.{service}.{_OPERATION}", _before_send, unique_id=_GUARD_ID)
        _installed.add(client)


def wired(client: CloudWatchLogsClient) -> bool:
    """Whether ``put_events`` still supplies its own body on ``client`` (False after a fallback)."""
    return client not in _fallback


def _ordinary(
    client: CloudWatchLogsClient,
    group: str,
    stream: str,
    events: Sequence[Sequence[Any]],
    fields: tuple[int, int],
    entity: Mapping[str, Mapping[str, str]] | None,
) -> PutLogEventsResponseTypeDef:
    ts, msg = fields
    extra: dict[str, Any] = {"entity": entity} if entity else {}
    return client.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": e[ts], "message": e[msg]} for e in events],
        **extra,
    )


def put_events(
    client: CloudWatchLogsClient,
    group: str,
    stream: str,
    events: Sequence[Sequence[Any]],
    *,
    fields: tuple[int, int] = (0, 1),
    entity: Mapping[str, Mapping[str, str]] | None = None,
) -> PutLogEventsResponseTypeDef:
    """Put ``events`` to ``group``/``stream``, as ``client.put_log_events`` would, for less CPU.

    Args:
        client: A ``logs`` client. Its configuration (endpoint, credentials, retries,
            timeouts) applies as for any call; the hooks are installed on first use.
        group: Log group name.
        stream: Log stream name.
        events: ``(timestamp, message)`` pairs: milliseconds since the epoch (``int``) and
            the message (``str``), in the order to send (sorted by timestamp, within the
            service's batch limits: this function neither checks nor splits); or longer
            tuples, with ``fields`` saying where those two are.
        fields: Positions of the timestamp and the message in each event.
        entity: The ``entity`` to send with the events (``keyAttributes``,
            ``attributes``), or None.

    Returns:
        The parsed response, as ``put_log_events`` returns it.

    Raises:
        botocore.exceptions.ClientError: The service refused the call (the client's modeled
            exception classes, as for ``put_log_events``).
        botocore.exceptions.BotoCoreError: No credentials, connection errors, timeouts...
    """
    if client in _fallback:
        return _ordinary(client, group, stream, events, fields, entity)
    install(client)
    pending = _pending
    pending.body = build_body(group, stream, events, fields=fields, entity=entity)
    pending.expected = build_body(group, stream, ())
    pending.applied = False
    try:
        response = client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[])
    except _SeamChanged:
        pass  # nothing was sent
    except Exception:
        if pending.applied:
            raise
        # The placeholder went out without our events (no hook fired at all): what it met
        # says nothing about them.
    else:
        if pending.applied:
            return response
    finally:
        pending.body = pending.expected = None
    _fallback.add(client)
    return _ordinary(client, group, stream, events, fields, entity)
