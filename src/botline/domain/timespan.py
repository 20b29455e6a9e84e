"""Timespans as the AIVAX contract writes them: "HH:MM:SS", "d.HH:MM:SS", or a number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

TIMESPAN_MAX_CHARS = 32
MAX_TIMESPAN = timedelta(days=36_500)
"""A century: far beyond any use, well inside what timedelta (and a float of seconds) holds."""
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2})(?:\.\d+)?$")


def parse_timespan(value: Any) -> timedelta | None:
    """None/"" -> None; 90 or "90" -> 90 s; "00:01:30" -> 90 s; "1.02:00:00" -> 1 day 2 hours."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and len(value) > TIMESPAN_MAX_CHARS:
        raise ValueError(f"must be a timespan of at most {TIMESPAN_MAX_CHARS} characters")
    if isinstance(value, bool):
        raise ValueError("must be a timespan such as \"00:00:05\" or a number of seconds")
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
    if not seconds <= MAX_TIMESPAN.total_seconds():  # also refuses NaN and infinity
        raise ValueError(f"must be at most {MAX_TIMESPAN.days} days")
    return timedelta(seconds=seconds)


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
