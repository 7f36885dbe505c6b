"""The connectors' shared rules: where a read starts, which days are settled, ids without personal data."""

from __future__ import annotations

from aiyield import keys
from aiyield.pulling import DAY, OVERLAP, REREAD_LIMIT, days_in_month, event_id, settled_days, since

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
TODAY = int(NOW // DAY * DAY)


def test_a_read_starts_days_back_then_one_overlap_behind_the_cursor():
    assert since(None, NOW, 7) == NOW - 7 * DAY
    assert since(NOW - 3600, NOW, 7) == NOW - 3600 - OVERLAP
    assert since(NOW - 20 * DAY, NOW, 7) == NOW - 7 * DAY  # stopped longer than --days: resumes --days back
    assert since(TODAY, NOW, 7, overlap=0) == TODAY  # daily streams: the next unread day


def test_records_published_near_the_end_of_the_dedup_horizon_are_not_read_again():
    assert REREAD_LIMIT < keys.DEDUP_SECONDS - OVERLAP
    stale = NOW - REREAD_LIMIT - 1
    assert since(stale, NOW, 30) == stale  # from the cursor itself: nothing published is asked again


def test_settled_days_end_before_now_minus_settle():
    assert settled_days(NOW - 3 * DAY, NOW, 2 * 3600) == [TODAY - 3 * DAY, TODAY - 2 * DAY, TODAY - DAY]
    assert settled_days(NOW - 2 * DAY, TODAY + 3600, 2 * 3600) == [TODAY - 2 * DAY]  # 01:00: yesterday not settled
    assert settled_days(TODAY, NOW, 0) == []


def test_months_and_ids():
    # January 2027, February 2027, February 2028 (a leap year), December 2026
    assert [days_in_month(d) for d in (TODAY, TODAY + 20 * DAY, TODAY + 400 * DAY, TODAY - 30 * DAY)] == [31, 28, 29, 31]
    a = event_id("cursor", "daily", "ana@example.com", TODAY, "requests")
    assert a == event_id("cursor", "daily", "ana@example.com", TODAY, "requests") and "ana" not in a
