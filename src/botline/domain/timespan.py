"""Timespans as the AIVAX contract writes them: "HH:MM:SS", "d.HH:MM:SS", or a number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

MAX_TIMESPAN_CHARS = 32
"""Longer than any timespan written by hand ("10675199.02:48:05.4775807" is .NET's largest)."""
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2})(?:\.\d+)?$")


def parse_timespan(value: Any) -> timedelta | None:
    """None/"" -> None; 90 or "90" -> 90 s; "00:01:30" -> 90 s; "1.02:00:00" -> 1 day 2 hours."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a timespan such as \"00:00:05\" or a number of seconds")
    if isinstance(value, str) and len(value) > MAX_TIMESPAN_CHARS:
        raise ValueError(f"must be at most {MAX_TIMESPAN_CHARS} characters")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _TIMESPAN.match(value.strip())):
        minutes, secs = int(match["minutes"]), int(match["seconds"])
        if minutes > 59 or secs > 59:
            raise ValueError("minutes and seconds must be below 60")
        seconds = (int(match["days"] or 0) * 86400 + int(match["hours"]) * 3600 + minutes * 60 + secs)
    elif isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        seconds = float(value)
    else:
        raise ValueError("must be a timespan such as \"00:00:05\", \"1.00:00:00\" or a number of seconds")
    if seconds < 0:
        raise ValueError("must not be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # "9" * 30 seconds: a 400 like any other bad value, not a 500
        raise ValueError("is longer than any timespan botline can hold") from None


def format_timespan(value: timedelta | None) -> str | None:
    """"HH:MM:SS", or "d.HH:MM:SS" from one day up."""
    if value is None:
        return None
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}.{clock}" if days else clock


Timespan = Annotated[
    timedelta | None,
    BeforeValidator(parse_timespan),
    PlainSerializer(format_timespan, return_type=str | None, when_used="json"),
]
"""A pydantic field type: accepts every accepted form, serialises to "HH:MM:SS" in JSON."""
