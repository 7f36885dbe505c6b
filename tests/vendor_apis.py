"""A local stand-in for the seat-based tools' admin APIs (`aiyield pull`), serving the shapes their documentation
publishes (see the docstrings of aiyield/pull_cursor.py, pull_claude_code.py and pull_copilot.py for the pages),
with their authentication, small pages (so every test pages), filtering by date, scripted failures (429 with
`Retry-After`, 5xx) and a record of every request.

Fixture records are built by the tests from those schemas; every record also carries a field no schema has
(`addedLater`), as a vendor adding a field would: the connectors must ignore it.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CURSOR_KEY = "key_" + "c" * 64
ANTHROPIC_KEY = "sk-ant-admin01-test-key"
GITHUB_TOKEN = "ghp_testtoken"
#: Records per page, below every client's page size: each test range spans several pages.
PAGE = 2


def _iso_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any


@dataclass
class VendorApis:
    cursor_members: list[dict] = field(default_factory=list)
    cursor_daily: list[dict] = field(default_factory=list)
    cursor_usage: list[dict] = field(default_factory=list)
    cursor_commits: list[dict] = field(default_factory=list)
    #: Claude Code Analytics records (each with `date`, RFC 3339).
    claude_code: list[dict] = field(default_factory=list)
    #: Copilot seat assignments (`/copilot/billing/seats` items).
    copilot_seats: list[dict] = field(default_factory=list)
    #: Copilot users-1-day reports: scope (`orgs` or `enterprises`) -> day (YYYY-MM-DD) -> that day's NDJSON records.
    #: A day not listed answers 404, as a report not yet processed does.
    copilot_users: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    #: (status, Retry-After) answered, in order, before serving normally ("" sends no Retry-After).
    failures: list[tuple[int, str]] = field(default_factory=list)
    url: str = ""

    def of(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def _page(items: list, page: int) -> tuple[list, bool]:
    start = (page - 1) * PAGE
    return items[start:start + PAGE], start + PAGE < len(items)


def _handler(apis: VendorApis):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-ndjson" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            query = dict(parse_qsl(parts.query))
            apis.requests.append(Request(method, parts.path, {k.lower(): v for k, v in self.headers.items()}, query, body))
            if parts.path.startswith("/download/"):  # signed report links: no credential, as GitHub's are
                return self._download(parts.path)
            if apis.failures:
                status, retry = apis.failures.pop(0)
                return self._send(status, {"error": "slow down"}, {"Retry-After": retry} if retry else {})
            path = parts.path
            if path.startswith(("/teams/", "/analytics/")):
                expected = "Basic " + base64.b64encode(f"{CURSOR_KEY}:".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._send(401, {"error": "Unauthorized", "message": "Invalid API key"})
                return self._cursor(method, path, query, body or {})
            if path == "/v1/organizations/usage_report/claude_code":
                if self.headers.get("x-api-key") != ANTHROPIC_KEY or self.headers.get("anthropic-version") != "2023-06-01":
                    return self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                                        "message": "invalid x-api-key"}})
                return self._claude_code(query)
            if path.startswith(("/orgs/", "/enterprises/")):
                if self.headers.get("Authorization") != f"Bearer {GITHUB_TOKEN}":
                    return self._send(401, {"message": "Bad credentials", "status": "401"})
                return self._copilot(path, query)
            return self._send(404, {"error": "not found"})

        # -- Cursor

        def _cursor(self, method: str, path: str, query: dict, body: dict) -> None:
            if path == "/teams/members":
                return self._send(200, {"teamMembers": apis.cursor_members})
            if path == "/teams/daily-usage-data":
                start, end = body["startDate"], body["endDate"]
                rows = [r for r in apis.cursor_daily if start <= r["date"] <= end]
                return self._send(200, {"data": rows, "period": {"startDate": start, "endDate": end}})
            if path == "/teams/filtered-usage-events":
                start, end = body["startDate"], body["endDate"]
                matched = [e for e in apis.cursor_usage if start <= int(e["timestamp"]) <= end]
                page = int(body.get("page", 1))
                items, more = _page(matched, page)
                return self._send(200, {"totalUsageEventsCount": len(matched), "usageEvents": items, "pagination": {
                    "numPages": -(-len(matched) // PAGE), "currentPage": page, "pageSize": PAGE,
                    "hasNextPage": more, "hasPreviousPage": page > 1}})
            if path == "/analytics/ai-code/commits":
                start, end = _iso_ts(query["startDate"]), _iso_ts(query["endDate"])
                matched = [c for c in apis.cursor_commits if start <= _iso_ts(c["createdAt"]) <= end]
                page = int(query.get("page", 1))
                items, _more = _page(matched, page)
                return self._send(200, {"items": items, "totalCount": len(matched), "page": page, "pageSize": PAGE})
            return self._send(404, {"error": "not found"})

        # -- Claude Code Analytics

        def _claude_code(self, query: dict) -> None:
            day = query["starting_at"][:10]
            matched = [r for r in apis.claude_code if r["date"][:10] == day]
            offset = int(query["page"]) if "page" in query else 0
            limit = min(int(query.get("limit", 20)), PAGE)
            items = matched[offset:offset + limit]
            more = offset + limit < len(matched)
            return self._send(200, {"data": items, "has_more": more, "next_page": str(offset + limit) if more else None})

        # -- Copilot

        def _copilot(self, path: str, query: dict) -> None:
            segments = path.strip("/").split("/")  # orgs|enterprises, name, copilot, ...
            scope = segments[0]
            if segments[2:] == ["copilot", "billing", "seats"]:
                page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 50)), PAGE)
                start = (page - 1) * per_page
                return self._send(200, {"total_seats": len(apis.copilot_seats),
                                        "seats": apis.copilot_seats[start:start + per_page]})
            if segments[2:] == ["copilot", "metrics", "reports", "users-1-day"]:
                day = query.get("day", "")
                if day not in apis.copilot_users.get(scope, {}):
                    return self._send(404, {"message": "Not Found", "status": "404"})
                return self._send(200, {"download_links": [f"{apis.url}/download/{scope}/{day}/part-0",
                                                           f"{apis.url}/download/{scope}/{day}/part-1"],
                                        "report_day": day})
            return self._send(404, {"message": "Not Found", "status": "404"})

        def _download(self, path: str) -> None:
            _, _, scope, day, part = path.split("/")
            records = apis.copilot_users[scope][day]
            half = len(records) // 2
            chunk = records[:half] if part == "part-0" else records[half:]  # a report split over two files
            return self._send(200, None, raw="".join(json.dumps(r) + "\n" for r in chunk).encode())

    return Handler


class Running:
    def __init__(self, apis: VendorApis) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(apis))
        apis.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
