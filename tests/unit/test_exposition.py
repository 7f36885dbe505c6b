"""The exporter's renderer writes exactly what prometheus_client's `generate_latest` writes, warm or cold."""

from __future__ import annotations

import gzip
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from aiyield.exposition import CONTENT_TYPE, Family, Renderer, wsgi_app

LABEL_NAMES = st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), min_size=0, max_size=4, unique=True)
#: Any text a label value can hold, quotes, backslashes and newlines included.
VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**63 - 1))


@st.composite
def families(draw) -> list[Metric | Family]:
    """Families of the library's kind (with timestamps, sometimes) and of ours (`Family`), mixed."""
    out: list[Metric | Family] = []
    for i in range(draw(st.integers(0, 4))):
        names = draw(LABEL_NAMES)
        counter = draw(st.booleans())
        doc = draw(st.text(max_size=20))
        rows = draw(st.lists(st.tuples(*[VALUES] * len(names)), max_size=6, unique=True))
        if draw(st.booleans()):
            family = Family(f"fam_{i}", doc, labels=names, kind="counter" if counter else "gauge")
            for values in rows:
                family.add(values, draw(NUMBERS))
        else:
            family = (CounterMetricFamily if counter else GaugeMetricFamily)(f"fam_{i}", doc, labels=names)
            for values in rows:
                stamp = draw(st.one_of(st.none(), st.floats(0, 2e9)))
                family.add_metric(list(values), draw(NUMBERS), timestamp=stamp)
        out.append(family)
    return out


class Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self):
        return iter(self.metrics)


def reference(metrics: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(metrics))
    return generate_latest(registry)


@settings(max_examples=300, deadline=None)
@given(first=families(), second=families())
def test_rendering_equals_generate_latest_cold_and_warm(first, second):
    renderer = Renderer()
    assert renderer.render(first) == reference(first)
    # The second scrape reuses what the first one learnt, for series of the same name and labels too.
    assert renderer.render(first) == reference(first)
    assert renderer.render(second) == reference(second)


def test_a_family_reads_like_the_library_s_own():
    ours = Family("jobs", "Jobs.", labels=["team", "window"], kind="counter")
    ours.add(("a", "1h"), 3)
    theirs = CounterMetricFamily("jobs", "Jobs.", labels=["team", "window"])
    theirs.add_metric(["a", "1h"], 3)
    assert ours.samples == theirs.samples
    assert reference([ours]) == reference([theirs])
    with pytest.raises(ValueError, match="gauge or a counter"):
        Family("h", "H.", kind="histogram")


def test_a_counter_with_created_time_is_rendered_as_the_library_does():
    registry = CollectorRegistry(auto_describe=False)
    Counter("errors", "Errors.\nSecond line \\ backslash.", registry=registry).inc(3)
    assert Renderer().render(registry.collect()) == generate_latest(registry)
    assert b"errors_created" in generate_latest(registry)  # the case is really exercised


def test_a_series_seen_again_with_another_value_shows_the_new_value():
    renderer = Renderer()
    for value in (1.0, 2.5):
        gauge = GaugeMetricFamily("g", "G.", labels=["team"])
        gauge.add_metric(["a"], value)
        assert renderer.render([gauge]) == f'# HELP g G.\n# TYPE g gauge\ng{{team="a"}} {value}\n'.encode()


def test_other_types_are_refused_rather_than_rendered_differently():
    histogram = HistogramMetricFamily("h", "H.", buckets=[("1", 1), ("+Inf", 2)], sum_value=3)
    with pytest.raises(ValueError, match="only gauges and counters"):
        Renderer().render([histogram])


def call(app, method: str = "GET", encoding: str = "") -> tuple[str, dict[str, str], bytes]:
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/metrics", "HTTP_ACCEPT_ENCODING": encoding,
               "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_the_app_serves_text_gzip_head_and_refuses_other_methods():
    gauge = GaugeMetricFamily("g", "G.", labels=["team"])
    gauge.add_metric(["a"], 1)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed([gauge]))
    app = wsgi_app(registry)
    status, headers, body = call(app)
    assert status == "200 OK" and headers["Content-Type"] == CONTENT_TYPE and body == generate_latest(registry)
    status, headers, zipped = call(app, encoding="gzip, deflate")
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == body
    status, headers, empty = call(app, method="HEAD")
    assert status == "200 OK" and empty == b"" and int(headers["Content-Length"]) == len(body)
    assert call(app, method="POST")[0].startswith("405")


def test_the_app_answers_500_when_collecting_fails():
    class Broken(Collector):
        def collect(self):
            raise RuntimeError("redis is gone")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Broken())
    status, _headers, body = call(wsgi_app(registry))
    assert status.startswith("500") and b"scrape failed" in body
