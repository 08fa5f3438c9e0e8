"""One app for every server the shutdown tests run: ASGI (``web:asgi``) and WSGI (``web:wsgi``).

``GET /log/N`` logs ``request N`` and answers with the serving process's id in an ``X-Pid``
header, so a test knows when every worker serves; the ASGI lifespan logs its startup and its
shutdown, with ``STOPPING_RECORDS`` more records (default 0) logged while it stops. With
``LOGGED_DIR`` set, each worker also writes every message it logged to ``LOGGED_DIR/<pid>``
once the logging call has returned, so a test knows what must be read back.
With ``CONFIGURE_IN_APP=1`` the module calls ``configure_logging()`` when it is imported
(settings from ``WATCHTOWER_REFRESH_*``), as an application run by gunicorn does; otherwise
the server's log config (uvicorn's ``--log-config``) makes the handler.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import watchtower_refresh

if os.environ.get("CONFIGURE_IN_APP") == "1":
    watchtower_refresh.configure_logging(console=False)

logger = logging.getLogger("app")
logger.setLevel(logging.INFO)
STOPPING_RECORDS = int(os.environ.get("STOPPING_RECORDS", "0"))
LOGGED_DIR = os.environ.get("LOGGED_DIR")


def log(message: str, *args: object) -> None:
    """Log ``message % args``, then note it in ``LOGGED_DIR`` if set."""
    logger.info(message, *args)
    if LOGGED_DIR:
        with open(os.path.join(LOGGED_DIR, str(os.getpid())), "a") as logged:
            logged.write(message % args + "\n")


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Answer ``/log/N`` and the lifespan protocol."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                log("lifespan startup in %d", os.getpid())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log("lifespan shutdown in %d", os.getpid())
                for n in range(STOPPING_RECORDS):
                    log("stopping %d in %d", n, os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        log("request %s", scope["path"].rsplit("/", 1)[-1])
        headers = [(b"x-pid", str(os.getpid()).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer ``/log/N``."""
    log("request %s", environ["PATH_INFO"].rsplit("/", 1)[-1])
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
    return [b"ok"]
