"""The memory tools the model calls: memory_save, memory_update, memory_search, memory_remove.

Every tool works on the memories of the caller's external user id only; without one it answers
with NO_USER. Bad arguments and rule violations come back as text the model can act on.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import ValidationError

from botline.domain.base import CamelModel
from botline.domain.memory import (
    DEFAULT_RETENTION_DAYS,
    MAX_CONTENT_BYTES,
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    InvalidMemory,
    Memory,
    MemoryFormat,
)
from botline.gateway.caller import Caller
from botline.gateway.tools import Tool, ToolFailure, ToolSpec, function_spec
from botline.memory.service import SEARCH_LIMIT, MemoryService
from botline.store.base import StoreError

log = logging.getLogger(__name__)

ArgsT = TypeVar("ArgsT", bound=CamelModel)

NO_USER = (
    "The user can't be identified in this conversation (no session tag, channel identity or `user` field), "
    "so nothing can be remembered or recalled. Do not retry; answer without memory."
)
STORE_DOWN = "Memory storage is unavailable right now. Tell the user you can't access saved information."

RETENTION_SCHEMA: dict[str, Any] = {
    "type": "integer", "minimum": MIN_RETENTION_DAYS, "maximum": MAX_RETENTION_DAYS,
    "description": f"Days to keep it ({MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS}, default {DEFAULT_RETENTION_DAYS}).",
}
MEMORY_DATA_SCHEMA: dict[str, Any] = {
    "type": "string", "description": f"The information to remember, in plain text (at most {MAX_CONTENT_BYTES} bytes).",
}
MEMORY_ID_SCHEMA: dict[str, Any] = {"type": "string", "description": "The id shown in brackets, e.g. [3f2a...]."}


def day(moment: datetime) -> str:
    return moment.date().isoformat()


def memory_line(memory: Memory) -> str:
    """`- [id] content`, continuation lines indented so each memory stays one list item."""
    return f"- [{memory.id}] " + "\n  ".join(memory.content.strip().splitlines())


def invalid_arguments(tool: str, exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    detail = error["msg"].removeprefix("Value error, ")
    return f"Invalid arguments for {tool}: {where}: {detail}."


class MemoryTool(Tool, Generic[ArgsT]):
    """Checks the user and the arguments, then runs `_run`; store and rule failures become text."""

    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    arguments: type[ArgsT]

    def __init__(self, service: MemoryService) -> None:
        self._service = service

    def spec(self) -> ToolSpec:
        return function_spec(self.name, self.description, self.parameters)

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        if not caller.external_user_id:
            raise ToolFailure(NO_USER)
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            raise ToolFailure(invalid_arguments(self.name, exc)) from exc
        try:
            return await self._run(parsed, caller.account_id, caller.external_user_id)
        except InvalidMemory as exc:
            raise ToolFailure(f"{self.name} did nothing: {exc}") from exc
        except StoreError as exc:
            log.warning("%s failed: %s", self.name, exc)
            raise ToolFailure(STORE_DOWN) from exc

    @abstractmethod
    async def _run(self, arguments: ArgsT, account_id: str, user: str) -> str: ...


class SaveArguments(CamelModel):
    memory_data: str
    retention_days: int | None = None


class UpdateArguments(SaveArguments):
    memory_id: str


class SearchArguments(CamelModel):
    query: str


class RemoveArguments(CamelModel):
    memory_id: str


def not_found(memory_id: str) -> str:
    return f"There is no memory with id {memory_id} for this user (it may have expired or been removed)."


class MemorySave(MemoryTool[SaveArguments]):
    name = "memory_save"
    arguments = SaveArguments
    description = (
        "Saves a lasting fact about the user (a preference, a name, a detail to recall in later conversations). "
        "Do not save passwords, card numbers or other sensitive data. Returns the new memory's id."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"memoryData": MEMORY_DATA_SCHEMA, "retentionDays": RETENTION_SCHEMA},
        "required": ["memoryData"],
    }

    async def _run(self, arguments: SaveArguments, account_id: str, user: str) -> str:
        memory = await self._service.save(account_id, user, arguments.memory_data, arguments.retention_days)
        return f"Saved memory [{memory.id}] (kept until {day(memory.expires_at)})."


class MemoryUpdate(MemoryTool[UpdateArguments]):
    name = "memory_update"
    arguments = UpdateArguments
    description = (
        "Replaces the text of one of the user's memories (by its id) when the information changed. "
        "retentionDays, when given, restarts its retention from today."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"memoryId": MEMORY_ID_SCHEMA, "memoryData": MEMORY_DATA_SCHEMA,
                       "retentionDays": RETENTION_SCHEMA},
        "required": ["memoryId", "memoryData"],
    }

    async def _run(self, arguments: UpdateArguments, account_id: str, user: str) -> str:
        memory = await self._service.find(account_id, user, arguments.memory_id, MemoryFormat.TEXT)
        if memory is not None:
            memory = await self._service.rewrite(memory, arguments.memory_data, arguments.retention_days)
        if memory is None:
            return not_found(arguments.memory_id)
        return f"Updated memory [{memory.id}] (kept until {day(memory.expires_at)})."


class MemorySearch(MemoryTool[SearchArguments]):
    name = "memory_search"
    arguments = SearchArguments
    description = (
        "Searches the user's saved memories for a word or phrase (case-insensitive) and returns the matching ones, "
        f"most recent first (at most {SEARCH_LIMIT}). Use it when something you need is not in the memories shown."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "Words to look for, e.g. \"birthday\"."}},
        "required": ["query"],
    }

    async def _run(self, arguments: SearchArguments, account_id: str, user: str) -> str:
        if not arguments.query.strip():
            raise InvalidMemory("query must not be empty.")
        found = await self._service.search(account_id, user, arguments.query)
        if not found:
            return f"No saved memory matches {arguments.query!r}."
        lines = "\n".join(memory_line(m) for m in found)
        return f"Memories matching {arguments.query!r}, most recent first:\n{lines}"


class MemoryRemove(MemoryTool[RemoveArguments]):
    name = "memory_remove"
    arguments = RemoveArguments
    description = "Forgets one of the user's memories by its id (when it is wrong or the user asks to forget it)."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {"memoryId": MEMORY_ID_SCHEMA}, "required": ["memoryId"],
    }

    async def _run(self, arguments: RemoveArguments, account_id: str, user: str) -> str:
        if not await self._service.remove(account_id, user, arguments.memory_id, MemoryFormat.TEXT):
            return not_found(arguments.memory_id)
        return f"Removed memory [{arguments.memory_id}]."
