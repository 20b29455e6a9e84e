"""Per-user memories: Text notes and DateReminder calendar entries, each with a retention period.

A memory belongs to one (account, external user id). It is live until `expires_at`; expired
memories are never read back and are purged in the background.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from botline.domain.base import CamelModel, new_id, utcnow

MAX_CONTENT_BYTES = 10 * 1024
"""memoryData (and a reminder's JSON) is at most 10 KB of UTF-8."""
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 365
DEFAULT_RETENTION_DAYS = 30
REMINDER_GRACE = timedelta(days=1)
"""Without an explicit retention a reminder is kept at least this long after its event."""


class MemoryFormat(StrEnum):
    TEXT = "Text"
    DATE_REMINDER = "DateReminder"


class InvalidMemory(ValueError):
    """A memory's content or retention breaks a rule; the message says which, in plain words."""


class MemoryFull(InvalidMemory):
    """The user already holds the most memories allowed (config `memory.max_per_user`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this user already has {limit} saved memories and reminders, the most allowed. Remove one that is "
            "no longer useful (or update an existing one instead), then save again."
        )


def check_content(content: str, what: str = "memoryData") -> str:
    """The content unchanged; InvalidMemory when it is blank or over MAX_CONTENT_BYTES."""
    if not content.strip():
        raise InvalidMemory(f"{what} must not be empty.")
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise InvalidMemory(
            f"{what} is {size} bytes long; the limit is {MAX_CONTENT_BYTES} bytes (10 KB). Save a shorter text."
        )
    return content


def retention(days: int | None) -> timedelta:
    """The retention period for `days` (None means the default); InvalidMemory outside 1..365."""
    days = DEFAULT_RETENTION_DAYS if days is None else days
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise InvalidMemory(
            f"retentionDays must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} (got {days})."
        )
    return timedelta(days=days)


class Memory(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    external_user_id: str
    format: MemoryFormat = MemoryFormat.TEXT
    content: str
    """Text: the note itself. DateReminder: the reminder as JSON (see `DateReminder`)."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    """Orders "most recent first": the last time the content was written."""
    expires_at: datetime

    def is_live(self, now: datetime) -> bool:
        return self.expires_at > now


def valid_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; InvalidMemory when the tz database does not know it."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidMemory(
            f"timezone {name!r} is not an IANA time zone name (for example Europe/Lisbon or America/Sao_Paulo)."
        ) from exc


def parse_moment(value: str, zone: tzinfo, what: str) -> datetime:
    """An ISO-8601 date or date-time; a value without an offset is read in `zone`."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidMemory(f"{what} must be an ISO-8601 date-time such as 2026-12-01T15:00 (got {value!r}).") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


class DateReminder(CamelModel):
    """The content of a DateReminder memory: an appointment in the user's calendar."""

    title: str = Field(min_length=1, max_length=500)
    start: str
    """ISO-8601, kept as given; read in `timezone` when it has no offset."""
    end: str | None = None
    timezone: str
    notes: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        valid_timezone(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> DateReminder:
        start, end = self.starts_at(), self.ends_at()
        if end is not None and end < start:
            raise InvalidMemory("end must not be before start.")
        return self

    def starts_at(self) -> datetime:
        return parse_moment(self.start, valid_timezone(self.timezone), "start")

    def ends_at(self) -> datetime | None:
        return None if self.end is None else parse_moment(self.end, valid_timezone(self.timezone), "end")

    def last_moment(self) -> datetime:
        return self.ends_at() or self.starts_at()

    def content(self) -> str:
        return check_content(self.model_dump_json(by_alias=True, exclude_none=True), "The reminder")

    def expiry(self, now: datetime, retention_days: int | None) -> datetime:
        """`now + retentionDays` when given; otherwise the default retention, stretched to a day
        after the event (never beyond the 365-day maximum), so a reminder outlives its event."""
        if retention_days is not None:
            return now + retention(retention_days)
        latest = now + retention(MAX_RETENTION_DAYS)
        return min(latest, max(now + retention(None), (self.last_moment() + REMINDER_GRACE).astimezone(UTC)))
