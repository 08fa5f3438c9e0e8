"""A minimal CloudWatch Logs endpoint on loopback that accepts (or refuses) everything fast.

moto's server is too slow to measure a client against; this one answers each JSON request
after counting its events, so the client is what gets measured. It runs in its own process:
its CPU time never counts against the client's.

    python -m benchmarks.sink [--fail]    # prints the port, then serves until killed

``--fail`` answers every PutLogEvents with 503 ServiceUnavailableException, an outage.
GET /stats returns {"requests": n, "events": n} as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_EVENT = b'"timestamp"'


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
    fail = False
    lock = threading.Lock()
    requests = 0
    events = 0

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Report what was received."""
        with _Sink.lock:
            body = json.dumps({"requests": _Sink.requests, "events": _Sink.events}).encode()
        self._answer(200, body)

    def do_POST(self) -> None:
        """Accept a request: count PutLogEvents' events, or refuse them in --fail mode."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        if action == "PutLogEvents":
            if _Sink.fail:
                error = {"__type": "ServiceUnavailableException", "message": "outage"}
                self._answer(503, json.dumps(error).encode())
                return
            with _Sink.lock:
                _Sink.requests += 1
                _Sink.events += body.count(_EVENT)
            self._answer(200, b'{"nextSequenceToken": "1"}')
        elif action == "DescribeLogGroups":
            self._answer(200, b'{"logGroups": []}')
        else:
            self._answer(200, b"{}")


def main() -> None:
    """Serve on 127.0.0.1 and a free port until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail", action="store_true")
    _Sink.fail = parser.parse_args().fail
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
