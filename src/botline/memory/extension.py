"""The memory turn extension: offers the memory and calendar tools a gateway enables and puts the
user's memories in the system context."""

from __future__ import annotations

import logging

from botline.domain.gateways import Gateway, SentinelFunction
from botline.domain.memory import Memory, MemoryFormat
from botline.gateway.caller import Caller
from botline.gateway.extensions import Contribution
from botline.gateway.tools import Tool
from botline.memory.calendar import CalendarCreate, CalendarDelete, CalendarSearch, CalendarUpdate
from botline.memory.service import MemoryService
from botline.memory.tools import MemoryRemove, MemorySave, MemorySearch, MemoryUpdate, memory_line
from botline.store.base import StoreError

log = logging.getLogger(__name__)

INJECTED_MEMORIES = 10
"""Without includeAllMemoryContext, this many of the most recent memories go into the context."""
BLOCK_OPEN, BLOCK_CLOSE = "<user_memories>", "</user_memories>"
BLOCK_INTRO = (
    "What you remember about this user from earlier conversations, most recent first. The id in brackets "
    "is what memory_update and memory_remove take."
)
MORE_HINT = "Older memories are not shown here: use memory_search to look for them."


def memory_block(memories: list[Memory], *, more: bool) -> str:
    lines = [BLOCK_OPEN, BLOCK_INTRO, *(memory_line(m) for m in memories)]
    if more:
        lines.append(MORE_HINT)
    lines.append(BLOCK_CLOSE)
    return "\n".join(lines)


class MemoryExtension:
    """"Remember" adds memory_save/update/remove (and memory_search unless every memory is injected);
    "Calendar" adds the calendar tools. Either is independent of the other."""

    def __init__(self, service: MemoryService, *, injected: int = INJECTED_MEMORIES) -> None:
        self._service = service
        self._injected = injected
        self._save, self._update = MemorySave(service), MemoryUpdate(service)
        self._search, self._remove = MemorySearch(service), MemoryRemove(service)
        self._calendar: list[Tool] = [
            CalendarCreate(service), CalendarSearch(service), CalendarUpdate(service), CalendarDelete(service)
        ]

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        params = gateway.parameters
        enabled = params.sentinel_options.enabled_functions if params.sentinel_options else []
        tools: list[Tool] = []
        instructions: list[str] = []
        if SentinelFunction.REMEMBER in enabled:
            include_all = bool(params.builtin_functions_options
                               and params.builtin_functions_options.include_all_memory_context)
            tools.append(self._save)
            if not include_all:
                tools.append(self._search)
            tools.extend([self._update, self._remove])
            block = await self._block(caller, include_all)
            if block:
                instructions.append(block)
        if SentinelFunction.CALENDAR in enabled:
            tools.extend(self._calendar)
        return Contribution(instructions=instructions, tools=tools)

    async def _block(self, caller: Caller, include_all: bool) -> str | None:
        if not caller.external_user_id:
            return None
        limit = None if include_all else self._injected + 1
        try:
            memories = await self._service.recent(caller.account_id, caller.external_user_id, MemoryFormat.TEXT, limit)
        except StoreError as exc:  # the turn goes on without memories rather than failing
            log.warning("memories not injected: %s", exc)
            return None
        if not memories:
            return None
        shown = memories if include_all else memories[: self._injected]
        return memory_block(shown, more=len(memories) > len(shown))
