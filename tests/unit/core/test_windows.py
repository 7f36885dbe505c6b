from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiyield.core.windows import WINDOWS, Rollup, bucket_start, expires_at, live_buckets, series, split_series, window_buckets

NOW = 1_800_000_000.0


def test_buckets_are_no_coarser_than_a_sixtieth_of_the_window():
    for length, width in WINDOWS.values():
        assert width * 60 <= length and length % width == 0


def test_window_buckets_cover_the_window_newest_first():
    starts = window_buckets("1h", NOW)
    assert len(starts) == 60 and starts[0] == bucket_start(NOW, 60) and starts == sorted(starts, reverse=True)
    assert starts[0] - starts[-1] == 59 * 60


@given(age=st.floats(min_value=0, max_value=40 * 86400, allow_nan=False))
def test_an_event_counts_in_a_window_iff_its_bucket_is_read(age):
    """What is written (live_buckets) and what is read (window_buckets) agree, within one bucket of the edge."""
    ts = NOW - age
    written = dict(live_buckets(ts, NOW))
    for window, (length, width) in WINDOWS.items():
        read = window_buckets(window, NOW)
        counted = window in written and written[window] in read
        if age < length - width:
            assert counted
        if age >= length + width:
            assert not counted


def test_old_events_skip_windows_they_have_aged_out_of():
    assert [w for w, _ in live_buckets(NOW - 2 * 3600, NOW)] == ["24h", "7d", "30d", "days"]
    assert [w for w, _ in live_buckets(NOW - 40 * 86400, NOW)] == ["days"]
    assert live_buckets(NOW - 44 * 86400, NOW) == []


def test_day_buckets_hold_only_spend_and_start_at_utc_midnight():
    r = Rollup()
    r.add(NOW, NOW, {series("spend", "a", "b", "c"): 5, series("tasks", "a", "b", "completed"): 1}, "a", "px:1")
    day = bucket_start(NOW, 86400)
    assert day % 86400 == 0
    assert r.counters[("days", day)] == {series("spend", "a", "b", "c"): 5}
    assert not any(key[0] == "days" for key in r.developers)


def test_expiry_is_after_the_last_read():
    for window, (length, width) in WINDOWS.items():
        start = bucket_start(NOW, width)
        assert expires_at(window, start) > start + length


def test_rollup_aggregates_per_bucket_and_series():
    r = Rollup()
    r.add(NOW, NOW, {series("spend", "a", "b", "c"): 5}, "a", "px:1")
    r.add(NOW, NOW, {series("spend", "a", "b", "c"): 7}, "a", "px:1")
    r.add(NOW, NOW, {series("spend", "a", "b", "c"): 0, series("x"): 0})
    key = ("1h", bucket_start(NOW, 60))
    assert r.counters[key] == {series("spend", "a", "b", "c"): 12}
    assert r.developers[("1h", bucket_start(NOW, 60), "a")] == {"px:1"}
    assert split_series(series("tokens", "a", "b")) == ("tokens", ["a", "b"])
