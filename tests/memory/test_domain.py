"""The memory rules: content size, retention bounds, reminder validation and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from botline.domain.memory import (
    MAX_CONTENT_BYTES,
    DateReminder,
    InvalidMemory,
    Memory,
    check_content,
    retention,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_content_is_measured_in_utf8_bytes() -> None:
    assert check_content("a" * MAX_CONTENT_BYTES)
    with pytest.raises(InvalidMemory, match="10241 bytes"):
        check_content("a" * (MAX_CONTENT_BYTES + 1))
    with pytest.raises(InvalidMemory, match="10242 bytes"):
        check_content("é" * 5121)
    with pytest.raises(InvalidMemory, match="empty"):
        check_content(" \n ")


@pytest.mark.parametrize(("days", "expected"), [(None, 30), (1, 1), (365, 365)])
def test_retention_defaults_to_30_days_within_1_to_365(days: int | None, expected: int) -> None:
    assert retention(days) == timedelta(days=expected)


@pytest.mark.parametrize("days", [0, -1, 366])
def test_retention_outside_the_bounds_is_refused(days: int) -> None:
    with pytest.raises(InvalidMemory, match="between 1 and 365"):
        retention(days)


def test_a_memory_is_live_until_its_expiry() -> None:
    memory = Memory(account_id="a", external_user_id="u", content="x", expires_at=NOW)
    assert memory.is_live(NOW - timedelta(microseconds=1)) and not memory.is_live(NOW)


def test_a_reminder_reads_local_times_in_its_zone() -> None:
    reminder = DateReminder(title="Call", start="2026-12-01T10:00", timezone="America/Sao_Paulo")
    assert reminder.starts_at() == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    offset = DateReminder(title="Call", start="2026-12-01T10:00+01:00", timezone="America/Sao_Paulo")
    assert offset.starts_at() == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Not/AZone"}, "IANA"),
        ({"timezone": ""}, "IANA"),
        ({"start": "tomorrow"}, "ISO-8601"),
        ({"end": "2026-12-01T09:00"}, "before start"),
        ({"title": ""}, "title"),
    ],
)
def test_invalid_reminders_are_refused(fields: dict[str, str], message: str) -> None:
    data = {"title": "Call", "start": "2026-12-01T10:00", "timezone": "Europe/Lisbon", **fields}
    with pytest.raises(ValidationError, match=message):
        DateReminder.model_validate(data)


def test_a_reminder_is_kept_the_default_retention_or_a_day_past_its_event_at_most_a_year() -> None:
    soon = DateReminder(title="Call", start="2026-11-26T10:00", timezone="UTC")
    assert soon.expiry(NOW, None) == NOW + timedelta(days=30)
    assert soon.expiry(NOW, 2) == NOW + timedelta(days=2)
    later = DateReminder(title="Trip", start="2027-02-01T10:00", end="2027-02-03T10:00", timezone="UTC")
    assert later.expiry(NOW, None) == datetime(2027, 2, 4, 10, 0, tzinfo=UTC)
    far = DateReminder(title="Someday", start="2030-01-01T00:00", timezone="UTC")
    assert far.expiry(NOW, None) == NOW + timedelta(days=365)


def test_reminder_content_is_its_json_without_empty_fields() -> None:
    reminder = DateReminder(title="Call", start="2026-12-01T10:00", timezone="UTC")
    assert reminder.content() == '{"title":"Call","start":"2026-12-01T10:00","timezone":"UTC"}'
