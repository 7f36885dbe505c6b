"""`aiyield bench` as a user runs it: a small run of the throughput phases prints one JSON object of figures.

Figures are measured, never asserted against a clock: this checks the command runs the floor and the worker on the
same data to completion and reports every figure of those phases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def bench_json(*args: str) -> tuple[dict, str]:
    """Run `aiyield bench --json` on its own embedded services; (figures, progress printed on stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AIYIELD_KAFKA", "AIYIELD_REDIS")}
    done = subprocess.run([sys.executable, "-m", "aiyield", "bench", *args, "--json"], env=env, capture_output=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout), done.stderr.decode()


def test_bench_json_reports_floor_worker_ratio_and_memory():
    figures, progress = bench_json("--events", "3000", "--phases", "floor,minimal,worker")
    for name in ("floor_events_per_s", "minimal_events_per_s", "worker_events_per_s", "ratio", "ratio_minimal",
                 "redis_bytes_per_event",
                 "dedup_bytes_per_event", "worker_peak_rss_mb"):
        assert figures[name] > 0, name
    assert figures["events"] == 3000
    assert "floor:" in progress


def test_bench_scrape_times_a_separate_exporter_process():
    figures, _progress = bench_json("--phases", "scrape", "--scrape-series", "2000")
    # 50 teams x 3 tools x 1 model: 150 label sets of spend and 4 token types in 4 windows, and the per-team gauges.
    assert 3000 <= figures["scrape_series"] <= 5000
    assert 0 < figures["scrape_ms_median"] <= figures["scrape_ms_max"]
    assert figures["redis_bytes_per_active_series"] > 0


def test_bench_refuses_an_unknown_phase():
    done = subprocess.run([sys.executable, "-m", "aiyield", "bench", "--phases", "nope"], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"unknown phase" in done.stderr
