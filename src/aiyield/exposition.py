"""Serve `/metrics` in the Prometheus text format (0.0.4), keeping each series' label text between scrapes.

prometheus_client's `generate_latest` sorts, validates and escapes every label of every sample on every scrape: at
10,000 series that was over half of the exporter's response time. From one scrape to the next the series are nearly
all the same and only their values move, so `Renderer` keeps the text of each series' name and labels and a scrape
formats only the values. The output is byte for byte what `generate_latest` gives for the families the exporter
serves, gauges and counters (tests/unit/test_exposition.py checks that on arbitrary families); anything else is
refused rather than rendered differently.

The exporter builds its families as `Family` rows rather than prometheus_client `Metric` objects (a `Sample` and a
labels dict per series cost more to make, and to collect as garbage, than rendering them). A `Family` still reads
like a `Metric`, so the exporter's collector stays an ordinary prometheus_client collector: `get_sample_value`,
`generate_latest` and the tests use it as such.
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from typing import Callable, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES, _escape, escape_label_name, escape_metric_name
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: gzip level for scrapes that accept it. Level 1 compresses the exposition text about 10x, at a fraction of the
#: CPU of the library's default level 9, which would cost more than rendering.
GZIP_LEVEL = 1

#: The live page: HTML for a window (`?window=`; the page picks its default when empty or unknown).
Page = Callable[[str], str]

#: Sample name suffixes `generate_latest` moves into gauge families of their own (OpenMetrics-only samples).
_MOVED = ("_created", "_gsum", "_gcount")


class Family:
    """One gauge or counter family, its series kept as rows of (label values, value).

    What the exporter builds on every scrape, ten thousand series at a time: a row is one tuple where a prometheus_client
    `Metric` makes a `Sample` and a labels dict. It quacks like a `Metric` (`name`, `type`, `documentation`,
    `samples`), so a registry's `get_sample_value` and `generate_latest` read it too; `samples` is built when asked.
    """

    __slots__ = ("name", "documentation", "type", "unit", "labelnames", "rows")

    def __init__(self, name: str, documentation: str, labels: Iterable[str] = (), kind: str = "gauge") -> None:
        if kind not in ("gauge", "counter"):
            raise ValueError(f"{name}: a family is a gauge or a counter, not {kind}")
        self.name, self.documentation, self.type, self.unit = name, documentation, kind, ""
        self.labelnames = tuple(labels)
        self.rows: list[tuple[tuple[str, ...], float]] = []

    def add(self, labels: tuple[str, ...], value: float) -> None:
        """One series: `labels` are the values of `labelnames`, in that order."""
        self.rows.append((labels, value))

    @property
    def sample_name(self) -> str:
        return self.name + ("_total" if self.type == "counter" else "")

    @property
    def samples(self) -> list[Sample]:
        name = self.sample_name
        return [Sample(name, dict(zip(self.labelnames, labels)), value, None) for labels, value in self.rows]


def _label_text(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """`name{label="value",...} ` of one series, exactly as `generate_latest` writes it (labels sorted by name)."""
    text = ",".join(f'{escape_label_name(k, UNDERSCORES)}="{_escape(v, ALLOWUTF8, False)}"' for k, v in sorted(labels))
    return f"{escape_metric_name(name, UNDERSCORES)}{{{text}}} " if text else f"{escape_metric_name(name, UNDERSCORES)} "


class Renderer:
    """Renders families to the text format, with the label text of the series of the last scrape kept.

    Two generations: a series seen in the previous scrape reuses its text, everything rendered now becomes the next
    scrape's previous. So the memory held is one scrape's series, and series that stopped appearing are dropped.
    A series is known by (sample name, label names, label values), whichever kind of family it came from.
    """

    def __init__(self) -> None:
        self._previous: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def render(self, families: Iterable[Family | Metric]) -> bytes:
        with self._lock:
            previous, current = self._previous, {}
            out: list[str] = []
            for metric in families:
                if metric.type not in ("gauge", "counter"):
                    raise ValueError(f"{metric.name}: only gauges and counters are rendered, not {metric.type}")
                name = escape_metric_name(metric.name + ("_total" if metric.type == "counter" else ""), UNDERSCORES)
                doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
                out.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
                if isinstance(metric, Family):
                    sample, labelnames = metric.sample_name, metric.labelnames
                    for labels, value in metric.rows:
                        key = (sample, labelnames, labels)
                        text = previous.get(key) or _label_text(sample, zip(labelnames, labels))
                        current[key] = text
                        out.append(f"{text}{floatToGoString(value)}\n")
                    continue
                moved: dict[str, list[str]] = {}  # OpenMetrics-only samples (`_created`): a gauge after the family
                for s in metric.samples:
                    key = (s.name, tuple(s.labels), tuple(s.labels.values()))
                    text = previous.get(key) or _label_text(s.name, s.labels.items())
                    current[key] = text
                    stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
                    line = f"{text}{floatToGoString(s.value)}{stamp}\n"
                    suffix = s.name[len(metric.name):]
                    if suffix in _MOVED:
                        moved.setdefault(suffix, []).append(line)
                    else:
                        out.append(line)
                for suffix, lines in sorted(moved.items()):
                    gauge = escape_metric_name(metric.name + suffix, UNDERSCORES)
                    out.append(f"# HELP {gauge} {doc}\n# TYPE {gauge} gauge\n")
                    out.extend(lines)
            self._previous = current  # only after a whole scrape: a failed one keeps what the last one learnt
            return "".join(out).encode("utf-8")


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not logged: one line every few seconds per Prometheus says nothing."""


def wsgi_app(registry: Collector, renderer: Renderer | None = None, page: Page | None = None) -> Callable:
    """`/metrics` (any path, as prometheus_client serves) from `registry`; 500 when collecting fails. With `page`,
    `/` is that HTML page instead (its `?window=` passed on)."""
    renderer = renderer or Renderer()

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if page is not None and environ.get("PATH_INFO", "/") in ("", "/"):
            return _page(page, environ, start_response)
        try:
            body = renderer.render(registry.collect())
        except Exception:
            # The collector has logged and counted what it knows (Redis unreadable); anything else is logged here.
            log.exception("scrape failed")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"scrape failed: see the exporter's log\n"]
        headers = [("Content-Type", CONTENT_TYPE)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body] if environ["REQUEST_METHOD"] == "GET" else [b""]

    return app


def _page(page: Page, environ, start_response) -> list[bytes]:
    window = parse_qs(environ.get("QUERY_STRING", "")).get("window", [""])[0]
    try:
        body = page(window).encode("utf-8")
    except Exception:
        log.exception("page failed")
        start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"page failed: see the exporter's log\n"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store")])
    return [body] if environ["REQUEST_METHOD"] == "GET" else [b""]


def start_server(
    registry: Collector, port: int, host: str, page: Page | None = None,
) -> tuple[ThreadingWSGIServer, threading.Thread]:
    """Serve `registry` (and `page` at `/`) on a daemon thread (one thread per request); returns (server, thread)."""
    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, wsgi_app(registry, page=page), Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="aiyield-exporter", daemon=True)
    thread.start()
    return server, thread
