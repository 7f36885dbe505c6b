"""A local stand-in for the providers' cost APIs, serving their documented shapes (see aiyield/reconcile.py's
docstring for the pages they come from), with pagination, authentication and a record of every request.

- `GET /v1/organizations/cost_report` (Anthropic): `x-api-key` and `anthropic-version` required; buckets of one UTC
  day from `starting_at` (snapped to its day) for those that end at or before `ending_at`; `amount` in cents as a
  decimal string; at most `PAGE_SIZE` buckets per page, `next_page` an opaque `page_...` token.
- `GET /v1/organization/costs` (OpenAI): `Authorization: Bearer` required; buckets from `start_time` while they
  start before `end_time` (so today's incomplete bucket is served, as the real API does); `amount.value` in USD as
  a JSON number; `next_page` opaque.

Days without data are served as buckets with no results, as the APIs do.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

DAY = 86400
#: Buckets per page, below the client's `limit`, as a server may answer: every test range spans several pages.
PAGE_SIZE = 7
ANTHROPIC_KEY = "sk-ant-admin01-test-key"
OPENAI_KEY = "sk-admin-test-key"


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    query: list[tuple[str, str]]

    def param(self, name: str) -> str | None:
        return dict(self.query).get(name)


@dataclass
class BillingApis:
    #: UTC day start -> amounts of that day's results (Anthropic: cent strings; OpenAI: USD numbers as JSON text)
    anthropic: dict[int, list[str]] = field(default_factory=dict)
    openai: dict[int, list[str]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    #: statuses to answer, in order, before serving normally (e.g. [429] to exercise the retry)
    failures: list[int] = field(default_factory=list)
    url: str = ""

    def of(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def _handler(apis: BillingApis):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            query = parse_qsl(parts.query)
            apis.requests.append(Request(parts.path, {k.lower(): v for k, v in self.headers.items()}, query))
            if apis.failures:
                status = apis.failures.pop(0)
                return self._send(status, {"error": {"type": "rate_limit_error", "message": "slow down"}},
                                  {"Retry-After": "0"})
            q = dict(query)
            if parts.path == "/v1/organizations/cost_report":
                if self.headers.get("x-api-key") != ANTHROPIC_KEY or self.headers.get("anthropic-version") != "2023-06-01":
                    return self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                                        "message": "invalid x-api-key"}})
                start = int(_parse_iso(q["starting_at"]) // DAY) * DAY
                end = _parse_iso(q["ending_at"]) if "ending_at" in q else float("inf")
                first = int(base64.b64decode(q["page"][5:]).decode()) if "page" in q else start
                limit = min(int(q.get("limit", 7)), PAGE_SIZE)
                days = [d for d in range(first, int(min(end, first + 400 * DAY)), DAY) if d + DAY <= end]
                page, rest = days[:limit], days[limit:]
                data = [{"starting_at": _iso(d), "ending_at": _iso(d + DAY), "results": [
                    {"currency": "USD", "amount": amount, "workspace_id": None, "description": None,
                     "cost_type": None, "context_window": None, "model": None, "service_tier": None,
                     "token_type": None} for amount in apis.anthropic.get(d, [])]} for d in page]
                token = "page_" + base64.b64encode(str(rest[0]).encode()).decode() if rest else None
                return self._send(200, {"data": data, "has_more": bool(rest), "next_page": token})
            if parts.path == "/v1/organization/costs":
                if self.headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
                    return self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                      "code": "invalid_api_key"}})
                start = int(q["start_time"])
                end = int(q.get("end_time", start + 7 * DAY))
                first = int(q["page"].removeprefix("cursor-")) if "page" in q else start
                limit = min(int(q.get("limit", 7)), PAGE_SIZE)
                days = list(range(first, end, DAY))
                page, rest = days[:limit], days[limit:]
                data = [{"object": "bucket", "start_time": d, "end_time": d + DAY, "results": [
                    {"object": "organization.costs.result", "amount": {"value": "__NUM__" + value, "currency": "usd"},
                     "line_item": None, "project_id": None} for value in apis.openai.get(d, [])]} for d in page]
                body = {"object": "page", "data": data, "has_more": bool(rest),
                        "next_page": f"cursor-{rest[0]}" if rest else None}
                # amount.value is a JSON number: splice the exact decimal text in.
                text = json.dumps(body)
                for value in {v for values in apis.openai.values() for v in values}:
                    text = text.replace(json.dumps("__NUM__" + value), value)
                data_bytes = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data_bytes)))
                self.end_headers()
                self.wfile.write(data_bytes)
                return None
            return self._send(404, {"error": "not found"})

    return Handler


class Running:
    def __init__(self, apis: BillingApis) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(apis))
        apis.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
