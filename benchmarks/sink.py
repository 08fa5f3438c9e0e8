"""A minimal CloudWatch Logs endpoint on loopback that accepts (or refuses) everything fast.

moto's server is too slow to measure a client against; this one answers each JSON request
after counting its events, so the client is what gets measured. It runs in its own process:
its CPU time never counts against the client's.

    python -m benchmarks.sink [--fail] [--latency SECONDS]   # prints the port, serves until killed

Each answer leaves in one write on a socket with ``TCP_NODELAY``: written as headers then
body, the second write waited for the client's delayed ACK, ~40 ms per request on Linux.
``--latency`` holds every answer back that long on purpose instead, as a distant service
would (each connection is served by its own thread, so concurrent requests overlap).
``--fail`` answers every PutLogEvents with 503 ServiceUnavailableException, an outage.
GET /stats returns {"requests": n, "events": n, "streams": n} as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

_EVENT = b'"timestamp"'
_STREAM = re.compile(rb'"logStreamName": ?"((?:[^"\\]|\\.)*)"')


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
    disable_nagle_algorithm = True  # TCP_NODELAY: an answer leaves as soon as it is written
    fail = False
    latency = 0.0
    lock = threading.Lock()
    requests = 0
    events = 0
    streams: ClassVar[set[bytes]] = set()

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def _answer(self, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} {self.responses[status][0]}\r\n"
            "Content-Type: application/x-amz-json-1.1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("ascii") + body)  # one write, one segment

    def do_GET(self) -> None:
        """Report what was received."""
        with _Sink.lock:
            stats = {
                "requests": _Sink.requests,
                "events": _Sink.events,
                "streams": len(_Sink.streams),
            }
        self._answer(200, json.dumps(stats).encode())

    def do_POST(self) -> None:
        """Accept a request: count PutLogEvents' events, or refuse them in --fail mode."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        if _Sink.latency:
            time.sleep(_Sink.latency)
        if action == "PutLogEvents":
            if _Sink.fail:
                error = {"__type": "ServiceUnavailableException", "message": "outage"}
                self._answer(503, json.dumps(error).encode())
                return
            stream = _STREAM.search(body)
            with _Sink.lock:
                _Sink.requests += 1
                _Sink.events += body.count(_EVENT)
                if stream:
                    _Sink.streams.add(stream.group(1))
            self._answer(200, b'{"nextSequenceToken": "1"}')
        elif action == "DescribeLogGroups":
            self._answer(200, b'{"logGroups": []}')
        else:
            self._answer(200, b"{}")


def main() -> None:
    """Serve on 127.0.0.1 and a free port until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    options = parser.parse_args()
    _Sink.fail, _Sink.latency = options.fail, options.latency
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
