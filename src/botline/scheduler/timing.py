"""Pure timing rules: when a cron task fires next in its time zone, and what a missed firing means.

Occurrences are computed on local wall-clock time and then placed on the time line:
- a local time that does not exist (spring forward) fires once at the first valid minute after it;
- a local time that exists twice (fall back) fires once, at its first occurrence.
So a daily 09:00 task fires exactly once per calendar day across both transitions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

MAX_GAP_MINUTES = 180
"""No time zone skips more than this at once."""
INTERVAL_SAMPLES = 12


class TimingError(ValueError):
    """A bad cron expression, time zone or time: the message is meant for the model."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimingError(f"Unknown time zone {name!r}: use an IANA name such as America/Sao_Paulo.") from exc


def _place(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant of a naive local time: first occurrence if ambiguous, next valid minute if missing."""
    for minutes in range(MAX_GAP_MINUTES + 1):
        candidate = (local + timedelta(minutes=minutes)).replace(tzinfo=tz, fold=0)
        if candidate.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return candidate.astimezone(UTC)
    raise TimingError("That local time does not exist in this time zone.")


def validate_cron(expression: str, *, allow_seconds: bool) -> None:
    fields = expression.split()
    if len(fields) != 5 and not (allow_seconds and len(fields) == 6):
        raise TimingError("The cron expression must have 5 fields: minute hour day month weekday.")
    if not croniter.is_valid(expression):
        raise TimingError(f"{expression!r} is not a valid cron expression.")


def next_occurrence(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first firing strictly after `after` (UTC in, UTC out)."""
    tz = zone(tz_name)
    local_after = after.astimezone(tz).replace(tzinfo=None)
    try:
        schedule = croniter(expression, local_after)
        for _ in range(1000):
            local: datetime = schedule.get_next(datetime)
            instant = _place(local, tz)
            if instant > after:
                return instant
    except (CroniterBadCronError, CroniterBadDateError, CroniterError) as exc:
        raise TimingError(f"{expression!r} never fires.") from exc
    raise TimingError(f"{expression!r} never fires after {after.isoformat()}.")


def shortest_interval(expression: str, tz_name: str, start: datetime) -> timedelta:
    """The shortest gap between consecutive firings over the next few (guards "every minute" crons)."""
    times = [next_occurrence(expression, tz_name, start)]
    for _ in range(INTERVAL_SAMPLES):
        times.append(next_occurrence(expression, tz_name, times[-1]))
    return min(b - a for a, b in pairwise(times))


def parse_when(value: str, now: datetime) -> datetime:
    """An ISO-8601 datetime that must carry its UTC offset."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TimingError(f"{value!r} is not an ISO-8601 date and time.") from exc
    if moment.tzinfo is None:
        raise TimingError("The time must include its UTC offset, e.g. 2026-03-20T10:00:00-03:00.")
    return moment.astimezone(UTC)


def missed_decision(fire_time: datetime, now: datetime, grace: timedelta) -> bool:
    """True when a firing missed while the process was down is still worth delivering."""
    return now - fire_time <= grace
