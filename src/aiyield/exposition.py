"""Serve `/metrics` in the Prometheus text format (0.0.4), keeping each series' label text between scrapes.

prometheus_client's `generate_latest` sorts, validates and escapes every label of every sample on every scrape: at
10,000 series that was over half of the exporter's response time. From one scrape to the next the series are nearly
all the same and only their values move, so `Renderer` keeps the text of each series' name and labels and a scrape
formats only the values. The output is byte for byte what `generate_latest` gives for the families the exporter
serves, gauges and counters (tests/unit/test_exposition.py checks that on arbitrary families); anything else is
refused rather than rendered differently.

The families still come from prometheus_client's registry and `Metric` objects, so `registry.get_sample_value` and
every other client-library tool keep working on the same collector.
"""

from __future__ import annotations

import gzip
import logging
import threading
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES, _escape, escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: gzip level for scrapes that accept it. Level 1 compresses the exposition text about 10x, at a fraction of the
#: CPU of the library's default level 9, which would cost more than rendering.
GZIP_LEVEL = 1

#: Sample name suffixes `generate_latest` moves into gauge families of their own (OpenMetrics-only samples).
_MOVED = ("_created", "_gsum", "_gcount")


def _label_text(sample: Sample) -> str:
    """`name{label="value",...} ` of one sample, exactly as `generate_latest` writes it (labels sorted by name)."""
    name = escape_metric_name(sample.name, UNDERSCORES)
    if not sample.labels:
        return name + " "
    labels = ",".join(
        f'{escape_label_name(k, UNDERSCORES)}="{_escape(v, ALLOWUTF8, False)}"' for k, v in sorted(sample.labels.items())
    )
    return f"{name}{{{labels}}} "


class Renderer:
    """Renders families to the text format, with the label text of the series of the last scrape kept.

    Two generations: a series seen in the previous scrape reuses its text, everything rendered now becomes the next
    scrape's previous. So the memory held is one scrape's series, and series that stopped appearing are dropped.
    """

    def __init__(self) -> None:
        self._previous: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def render(self, families: Iterable[Metric]) -> bytes:
        with self._lock:
            previous, current = self._previous, {}
            out: list[str] = []
            for metric in families:
                if metric.type not in ("gauge", "counter"):
                    raise ValueError(f"{metric.name}: only gauges and counters are rendered, not {metric.type}")
                name = escape_metric_name(metric.name + ("_total" if metric.type == "counter" else ""), UNDERSCORES)
                doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
                out.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
                moved: dict[str, list[str]] = {}  # OpenMetrics-only samples (`_created`): a gauge after the family
                for sample in metric.samples:
                    key = (sample.name, *sample.labels.items())
                    text = previous.get(key)
                    if text is None:
                        text = _label_text(sample)
                    current[key] = text
                    stamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
                    line = f"{text}{floatToGoString(sample.value)}{stamp}\n"
                    suffix = sample.name[len(metric.name):]
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


def wsgi_app(registry: Collector, renderer: Renderer | None = None) -> Callable:
    """`/metrics` (any path, as prometheus_client serves) from `registry`; 500 when collecting fails."""
    renderer = renderer or Renderer()

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
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


def start_server(registry: Collector, port: int, host: str) -> tuple[ThreadingWSGIServer, threading.Thread]:
    """Serve `registry` on a daemon thread (one thread per scrape); returns (server, thread)."""
    import socket

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, wsgi_app(registry), Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="aiyield-exporter", daemon=True)
    thread.start()
    return server, thread
