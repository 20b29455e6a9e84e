"""The calendar tools end to end over DateReminder memories."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from botline.domain.clock import FrozenClock
from tests.emulators.fake_llm import FakeLLM
from tests.memory.helpers import CALENDAR, memory_client, new_session, saved_id, use_tool
from tests.support.server import RunningServer

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DENTIST = {"title": "Dentist", "start": "2026-12-01T15:00", "end": "2026-12-01T16:00",
           "timezone": "Europe/Lisbon", "notes": "Bring the X-rays"}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


async def calendar_session(server: RunningServer, fake: FakeLLM, tag: str | None = "user-1") -> str:
    return await new_session(server, await memory_client(server, fake, **CALENDAR), tag)


async def test_create_search_update_and_delete(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await calendar_session(server, fake_llm)
    created = await use_tool(server, fake_llm, key, "calendar_create", **DENTIST)
    reminder_id = saved_id(created)
    assert created.startswith("Created reminder") and "2026-12-25" in created  # default 30 days
    await use_tool(server, fake_llm, key, "calendar_create", title="Haircut", start="2026-11-28T10:00-03:00",
                   timezone="America/Sao_Paulo")

    listed = orjson.loads(await use_tool(server, fake_llm, key, "calendar_search"))
    assert [r["title"] for r in listed] == ["Haircut", "Dentist"]  # soonest first
    assert listed[1] == {"reminderId": reminder_id, **DENTIST}
    found = orjson.loads(await use_tool(server, fake_llm, key, "calendar_search", query="x-rays"))
    assert [r["reminderId"] for r in found] == [reminder_id]
    window = orjson.loads(await use_tool(server, fake_llm, key, "calendar_search", **{"from": "2026-11-30T00:00Z"}))
    assert [r["title"] for r in window] == ["Dentist"]
    assert await use_tool(server, fake_llm, key, "calendar_search", to="2026-11-27T00:00Z") == "No appointment matches."

    updated = await use_tool(server, fake_llm, key, "calendar_update", reminderId=reminder_id,
                             start="2026-12-02T15:00", end=None)
    assert updated.startswith(f"Updated reminder [{reminder_id}]")
    _, stored = await server.call("GET", f"/api/v1/memories/{reminder_id}")
    assert stored["format"] == "DateReminder"
    assert orjson.loads(stored["content"]) == {"title": "Dentist", "start": "2026-12-02T15:00",
                                               "timezone": "Europe/Lisbon", "notes": "Bring the X-rays"}

    assert await use_tool(server, fake_llm, key, "calendar_delete", reminderId=reminder_id) == (
        f"Deleted reminder [{reminder_id}].")
    assert "no appointment" in await use_tool(server, fake_llm, key, "calendar_delete", reminderId=reminder_id)


async def test_invalid_reminders_come_back_as_text(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await calendar_session(server, fake_llm)
    cases = [
        ({**DENTIST, "timezone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({**DENTIST, "timezone": "../etc/passwd"}, "not an IANA time zone"),
        ({**DENTIST, "start": "next tuesday"}, "ISO-8601"),
        ({**DENTIST, "end": "2026-12-01T14:00"}, "end must not be before start"),
        ({"title": "No start", "timezone": "UTC"}, "start: Field required"),
        ({**DENTIST, "retentionDays": 400}, "between 1 and 365"),
    ]
    for arguments, expected in cases:
        result = await use_tool(server, fake_llm, key, "calendar_create", **arguments)
        assert result.startswith("calendar_create did nothing") and expected in result, (arguments, result)
    reminder_id = saved_id(await use_tool(server, fake_llm, key, "calendar_create", **DENTIST))
    result = await use_tool(server, fake_llm, key, "calendar_update", reminderId=reminder_id, timezone="Nowhere/City")
    assert "not an IANA time zone" in result
    assert (await server.call("GET", "/api/v1/memories?format=DateReminder"))[1][0]["id"] == reminder_id


async def test_a_far_event_is_kept_past_it_and_text_ids_are_not_reminders(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await calendar_session(server, fake_llm)
    far = saved_id(await use_tool(server, fake_llm, key, "calendar_create", title="Trip", start="2027-03-10T08:00",
                                  timezone="Asia/Tokyo"))
    _, stored = await server.call("GET", f"/api/v1/memories/{far}")
    assert stored["expiresAt"].startswith("2027-03-10")  # a day after the event (08:00 Tokyo is 23:00 UTC)
    both = await memory_client(server, fake_llm, sentinelOptions={"enabledFunctions": ["Remember", "Calendar"]})
    key = await new_session(server, both, "user-1")
    text_id = saved_id(await use_tool(server, fake_llm, key, "memory_save", memoryData="Likes jazz"))
    assert "no appointment" in await use_tool(server, fake_llm, key, "calendar_delete", reminderId=text_id)
    assert "no memory" in await use_tool(server, fake_llm, key, "memory_remove", memoryId=far)


async def test_without_a_user_the_calendar_is_unavailable(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await calendar_session(server, fake_llm, tag=None)
    assert "can't be identified" in await use_tool(server, fake_llm, key, "calendar_create", **DENTIST)
