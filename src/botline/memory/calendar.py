"""Calendar tools over DateReminder memories: calendar_create, calendar_search, calendar_update,
calendar_delete. A reminder is {title, start, end?, timezone, notes?}; it pushes nothing by itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import Field, ValidationError

from botline.domain.base import CamelModel
from botline.domain.memory import DateReminder, InvalidMemory, Memory, MemoryFormat, parse_moment
from botline.memory.service import SEARCH_LIMIT, matches, search_terms
from botline.memory.tools import RETENTION_SCHEMA, MemoryTool, day

REMINDER_FIELDS: dict[str, Any] = {
    "title": {"type": "string", "description": "What the appointment is."},
    "start": {"type": "string", "description": "ISO-8601 date-time, e.g. 2026-12-01T15:00 (local to timezone)."},
    "end": {"type": "string", "description": "Optional ISO-8601 end, not before start."},
    "timezone": {"type": "string", "description": "IANA time zone of the user, e.g. America/Sao_Paulo."},
    "notes": {"type": "string", "description": "Optional details."},
}
REMINDER_ID_SCHEMA: dict[str, Any] = {"type": "string", "description": "The reminder's id from calendar_search."}
BOUND_SCHEMA: dict[str, Any] = {
    "type": "string", "description": "Optional ISO-8601 date-time bound; without an offset it is read as UTC.",
}


def reminder_of(memory: Memory) -> DateReminder:
    return DateReminder.model_validate_json(memory.content)


def reminder_view(memory: Memory) -> dict[str, Any]:
    return {"reminderId": memory.id, **orjson.loads(memory.content)}


def parse_reminder(data: dict[str, Any]) -> DateReminder:
    try:
        return DateReminder.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] == "value_error":  # our own sentence, which names the field
            raise InvalidMemory(error["msg"].removeprefix("Value error, ")) from exc
        where = ".".join(str(part) for part in error["loc"]) or "reminder"
        raise InvalidMemory(f"{where}: {error['msg']}.") from exc


class CreateArguments(CamelModel):
    title: Any = None
    start: Any = None
    end: Any = None
    timezone: Any = None
    notes: Any = None
    retention_days: int | None = None


class UpdateArguments(CreateArguments):
    reminder_id: str


class SearchArguments(CamelModel):
    query: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class DeleteArguments(CamelModel):
    reminder_id: str


def _fields(arguments: CreateArguments) -> dict[str, Any]:
    return {name: getattr(arguments, name) for name in REMINDER_FIELDS if name in arguments.model_fields_set}


class CalendarCreate(MemoryTool[CreateArguments]):
    name = "calendar_create"
    arguments = CreateArguments
    description = "Adds an appointment to the user's calendar. Returns its id."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {**REMINDER_FIELDS, "retentionDays": RETENTION_SCHEMA},
        "required": ["title", "start", "timezone"],
    }

    async def _run(self, arguments: CreateArguments, account_id: str, user: str) -> str:
        reminder = parse_reminder(_fields(arguments))
        memory = await self._service.save_reminder(account_id, user, reminder, arguments.retention_days)
        return f"Created reminder [{memory.id}] (kept until {day(memory.expires_at)}): {memory.content}"


class CalendarSearch(MemoryTool[SearchArguments]):
    name = "calendar_search"
    arguments = SearchArguments
    description = (
        "Lists the user's calendar appointments, soonest first, optionally those matching words in the title or "
        f"notes and/or overlapping a time window (at most {SEARCH_LIMIT})."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "Optional words to look for."},
                       "from": BOUND_SCHEMA, "to": BOUND_SCHEMA},
    }

    async def _run(self, arguments: SearchArguments, account_id: str, user: str) -> str:
        low = None if arguments.from_ is None else parse_moment(arguments.from_, UTC, "from")
        high = None if arguments.to is None else parse_moment(arguments.to, UTC, "to")
        needles = search_terms(arguments.query or "")
        found: list[tuple[datetime, Memory]] = []
        for memory in await self._service.recent(account_id, user, MemoryFormat.DATE_REMINDER):
            try:
                reminder = reminder_of(memory)
            except ValidationError:  # written by something else than these tools: not an appointment
                continue
            start, last = reminder.starts_at(), reminder.last_moment()
            if needles and not matches(f"{reminder.title}\n{reminder.notes or ''}", needles):
                continue
            if (low is not None and last < low) or (high is not None and start > high):
                continue
            found.append((start.astimezone(UTC), memory))
        found.sort(key=lambda pair: pair[0])
        if not found:
            return "No appointment matches."
        return orjson.dumps([reminder_view(memory) for _, memory in found[:SEARCH_LIMIT]]).decode()


class CalendarUpdate(MemoryTool[UpdateArguments]):
    name = "calendar_update"
    arguments = UpdateArguments
    description = (
        "Changes an appointment by its id: only the fields given change (send null to clear end or notes)."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"reminderId": REMINDER_ID_SCHEMA, **REMINDER_FIELDS, "retentionDays": RETENTION_SCHEMA},
        "required": ["reminderId"],
    }

    async def _run(self, arguments: UpdateArguments, account_id: str, user: str) -> str:
        memory = await self._service.find(account_id, user, arguments.reminder_id, MemoryFormat.DATE_REMINDER)
        if memory is not None:
            merged = {**orjson.loads(memory.content), **_fields(arguments)}
            reminder = parse_reminder({k: v for k, v in merged.items() if v is not None})
            memory = await self._service.rewrite_reminder(memory, reminder, arguments.retention_days)
        if memory is None:
            return f"There is no appointment with id {arguments.reminder_id} for this user."
        return f"Updated reminder [{memory.id}] (kept until {day(memory.expires_at)}): {memory.content}"


class CalendarDelete(MemoryTool[DeleteArguments]):
    name = "calendar_delete"
    arguments = DeleteArguments
    description = "Deletes an appointment from the user's calendar by its id."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {"reminderId": REMINDER_ID_SCHEMA}, "required": ["reminderId"],
    }

    async def _run(self, arguments: DeleteArguments, account_id: str, user: str) -> str:
        removed = await self._service.remove(account_id, user, arguments.reminder_id, MemoryFormat.DATE_REMINDER)
        if not removed:
            return f"There is no appointment with id {arguments.reminder_id} for this user."
        return f"Deleted reminder [{arguments.reminder_id}]."
