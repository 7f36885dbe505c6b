"""A stand-in for the ingest gateway's `POST /v1/events`: a real HTTP server on a free 127.0.0.1 port that records
what it receives and answers with scripted statuses (then 202). Shared by the emitter and hook tests."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GatewayDouble:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # {"path", "headers", "body"} in arrival order
        #: Statuses to answer, consumed one per request; 202 with the gateway's body once empty.
        self.script: list[int] = []
        self.reply: dict | None = None  # overrides the 202 body
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with double._lock:
                    double.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = double.script.pop(0) if double.script else 202
                reply = double.reply or {"accepted": len(body["events"]), "rejected": []}
                payload = json.dumps(reply if status == 202 else {"error": "scripted"}).encode()
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def events(self) -> list[dict]:
        with self._lock:
            return [e for r in self.requests for e in r["body"]["events"]]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """A URL nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
