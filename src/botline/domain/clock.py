"""An injectable clock so that time-dependent logic is testable without sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from botline.domain.base import utcnow


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return utcnow()


class FrozenClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta
