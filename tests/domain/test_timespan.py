"""Timespans in every accepted form, and how they are written back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from botline.domain.timespan import format_timespan, parse_timespan


@pytest.mark.parametrize(("given", "seconds"), [
    ("00:00:05", 5), ("03:00:00", 10800), ("1.02:03:04", 93784), (90, 90), ("90", 90), (2.5, 2.5),
    ("", None), (None, None),
])
def test_accepted_forms(given: object, seconds: float | None) -> None:
    parsed = parse_timespan(given)
    assert (parsed.total_seconds() if parsed else None) == seconds


@pytest.mark.parametrize("given", ["soon", "1:2", "00:61:00", -5, True, "1.2.3"])
def test_rejected_forms(given: object) -> None:
    with pytest.raises(ValueError):
        parse_timespan(given)


def test_written_as_hh_mm_ss_and_days_from_one_day() -> None:
    assert format_timespan(timedelta(seconds=5)) == "00:00:05"
    assert format_timespan(timedelta(hours=27, minutes=1)) == "1.03:01:00"
    assert format_timespan(None) is None


@pytest.mark.parametrize("given", [1e300, "9" * 30, "1" * 33, "36501.00:00:00"])
def test_a_timespan_too_long_to_hold_is_a_value_error_not_an_overflow(given: object) -> None:
    """1e300 seconds used to raise OverflowError from timedelta, which validation let through as a 500."""
    with pytest.raises(ValueError, match="at most"):
        parse_timespan(given)
    assert parse_timespan("36500.00:00:00") == timedelta(days=36_500)
