"""Cron in a time zone across DST transitions, guards and missed firings (pure functions, no clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from botline.scheduler.timing import (
    TimingError,
    missed_decision,
    next_occurrence,
    parse_when,
    shortest_interval,
    validate_cron,
)

# (zone, a spring-forward day, a fall-back day) from the tz database. São Paulo's are from 2018,
# its last year with DST: the rule must hold for historical transitions too.
TRANSITIONS = [
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
    ("America/Sao_Paulo", date(2018, 11, 4), date(2018, 2, 18)),
]


def firings(expression: str, zone: str, start: datetime, count: int) -> list[datetime]:
    times, moment = [], start
    for _ in range(count):
        moment = next_occurrence(expression, zone, moment)
        times.append(moment)
    return times


@pytest.mark.parametrize(("zone", "spring", "fall"), TRANSITIONS)
def test_daily_9am_fires_once_per_calendar_day_across_both_transitions(zone: str, spring: date, fall: date) -> None:
    tz = ZoneInfo(zone)
    for day in (spring, fall):
        start = datetime.combine(day - timedelta(days=3), datetime.min.time(), tz).astimezone(UTC)
        local = [t.astimezone(tz) for t in firings("0 9 * * *", zone, start, 7)]
        assert [t.date() for t in local] == [day - timedelta(days=3) + timedelta(days=n) for n in range(7)]
        assert {(t.hour, t.minute) for t in local} == {(9, 0)}


def test_a_time_skipped_by_spring_forward_fires_once_at_the_first_valid_minute() -> None:
    tz = ZoneInfo("America/New_York")
    start = datetime(2026, 3, 7, 12, tzinfo=tz).astimezone(UTC)
    local = [t.astimezone(tz) for t in firings("30 2 * * *", "America/New_York", start, 3)]
    assert [t.isoformat() for t in local] == [
        "2026-03-08T03:00:00-04:00",  # 02:30 does not exist that day
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_a_time_repeated_by_fall_back_fires_once() -> None:
    tz = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 10, 24, 12, tzinfo=tz).astimezone(UTC)
    local = [t.astimezone(tz) for t in firings("30 2 * * *", "Europe/Berlin", start, 3)]
    assert [t.date().day for t in local] == [25, 26, 27]
    assert local[0].isoformat() == "2026-10-25T02:30:00+02:00"  # the first of the two 02:30s


def test_weekly_task_keeps_its_local_time() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    local = [t.astimezone(ZoneInfo("America/New_York")) for t in firings("0 9 * * 1", "America/New_York", start, 3)]
    assert [(t.weekday(), t.hour) for t in local] == [(0, 9)] * 3


def test_guards() -> None:
    with pytest.raises(TimingError, match="5 fields"):
        validate_cron("* * * *", allow_seconds=False)
    with pytest.raises(TimingError, match="5 fields"):
        validate_cron("*/2 * * * * *", allow_seconds=False)
    validate_cron("*/2 * * * * *", allow_seconds=True)
    with pytest.raises(TimingError, match="not a valid cron"):
        validate_cron("61 * * * *", allow_seconds=False)
    with pytest.raises(TimingError, match="Unknown time zone"):
        next_occurrence("0 9 * * *", "Mars/Olympus", datetime.now(UTC))
    assert shortest_interval("*/5 * * * *", "UTC", datetime(2026, 1, 1, tzinfo=UTC)) == timedelta(minutes=5)
    assert shortest_interval("0 9,10 * * *", "UTC", datetime(2026, 1, 1, tzinfo=UTC)) == timedelta(hours=1)
    with pytest.raises(TimingError, match="UTC offset"):
        parse_when("2026-03-20T10:00:00", datetime.now(UTC))
    assert parse_when("2026-03-20T10:00:00-03:00", datetime.now(UTC)) == datetime(2026, 3, 20, 13, tzinfo=UTC)


def test_missed_firings_within_the_grace_still_count() -> None:
    fire = datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert missed_decision(fire, fire + timedelta(minutes=9), timedelta(minutes=10))
    assert not missed_decision(fire, fire + timedelta(minutes=11), timedelta(minutes=10))
