"""What the memory tools and the turn extension do with the store: scoped reads and writes, search,
and the background purge of expired memories."""

from __future__ import annotations

import logging
import re

from botline.domain.clock import Clock
from botline.domain.memory import DateReminder, Memory, MemoryFormat, MemoryFull, check_content, retention
from botline.periodic import Periodic
from botline.store.base import Store

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 300.0
SEARCH_LIMIT = 20
MAX_PER_USER = 500
MIN_WORD_CHARS = 2
WORD = re.compile(r"\w+")


class MemoryService:
    """Every method is scoped to one (account, external user id): another user's ids are unknown here.

    A user holds at most `max_per_user` memories, and no read loads more than that many: searches look at
    the user's most recent `max_per_user`, which under the cap is all of them.
    """

    def __init__(
        self, store: Store, clock: Clock, *, purge_interval: float = PURGE_INTERVAL_SECONDS,
        max_per_user: int = MAX_PER_USER,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_per_user = max_per_user
        self._purger = Periodic("memory-purge", purge_interval, self.purge_once)

    async def save(self, account_id: str, user: str, content: str, retention_days: int | None) -> Memory:
        """Raises InvalidMemory for empty or oversized content or a retention outside 1..365, and
        MemoryFull when the user already holds `max_per_user` memories."""
        now = self._clock.now()
        memory = Memory(
            account_id=account_id, external_user_id=user, format=MemoryFormat.TEXT, content=check_content(content),
            created_at=now, updated_at=now, expires_at=now + retention(retention_days),
        )
        await self._create(memory)
        return memory

    async def save_reminder(
        self, account_id: str, user: str, reminder: DateReminder, retention_days: int | None
    ) -> Memory:
        now = self._clock.now()
        memory = Memory(
            account_id=account_id, external_user_id=user, format=MemoryFormat.DATE_REMINDER,
            content=reminder.content(), created_at=now, updated_at=now,
            expires_at=reminder.expiry(now, retention_days),
        )
        await self._create(memory)
        return memory

    async def _create(self, memory: Memory) -> None:
        """Counted before the write, so saves of the same user racing at the cap may each pass once: the cap
        can be exceeded by the number of that user's turns running at the same moment, never more."""
        held = await self._store.memories.count_for_user(memory.account_id, memory.external_user_id,
                                                         now=memory.created_at)
        if held >= self._max_per_user:
            raise MemoryFull(self._max_per_user)
        await self._store.memories.create(memory)

    async def find(self, account_id: str, user: str, memory_id: str, format: MemoryFormat) -> Memory | None:
        """The user's live memory of that format with that id; None for anyone else's."""
        memory = await self._store.memories.get(account_id, memory_id, now=self._clock.now())
        if memory is None or memory.external_user_id != user or memory.format != format:
            return None
        return memory

    async def rewrite(self, memory: Memory, content: str, retention_days: int | None) -> Memory | None:
        """New text (and, when given, a new retention from now); None when it vanished meanwhile."""
        now = self._clock.now()
        expires_at = memory.expires_at if retention_days is None else now + retention(retention_days)
        changed = memory.model_copy(update={"content": check_content(content), "updated_at": now,
                                            "expires_at": expires_at})
        return changed if await self._store.memories.update(changed) else None

    async def rewrite_reminder(
        self, memory: Memory, reminder: DateReminder, retention_days: int | None
    ) -> Memory | None:
        """Without retentionDays the expiry stays, stretched when the event moved later."""
        now = self._clock.now()
        if retention_days is None:
            expires_at = max(memory.expires_at, reminder.expiry(now, None))
        else:
            expires_at = reminder.expiry(now, retention_days)
        changed = memory.model_copy(update={"content": reminder.content(), "updated_at": now,
                                            "expires_at": expires_at})
        return changed if await self._store.memories.update(changed) else None

    async def remove(self, account_id: str, user: str, memory_id: str, format: MemoryFormat) -> bool:
        if await self.find(account_id, user, memory_id, format) is None:
            return False
        return await self._store.memories.delete(account_id, memory_id, now=self._clock.now())

    async def recent(
        self, account_id: str, user: str, format: MemoryFormat, limit: int | None = None
    ) -> list[Memory]:
        """The user's live memories of that format, most recently written first: at most `limit`, and
        never more than `max_per_user`."""
        bound = self._max_per_user if limit is None else min(limit, self._max_per_user)
        return await self._store.memories.list_for_user(
            account_id, user, now=self._clock.now(), format=format, limit=bound
        )

    async def search(self, account_id: str, user: str, query: str, limit: int = SEARCH_LIMIT) -> list[Memory]:
        """Live Text memories holding the query or any of its words (case-insensitive), most recent first."""
        needles = search_terms(query)
        memories = await self.recent(account_id, user, MemoryFormat.TEXT)
        return [m for m in memories if matches(m.content, needles)][:limit]

    async def purge_once(self) -> int:
        removed = 0
        while batch := await self._store.memories.purge(self._clock.now()):
            removed += batch
        if removed:
            log.info("purged %d expired memories", removed)
        return removed

    async def start_purging(self) -> None:
        self._purger.start()

    async def close(self) -> None:
        await self._purger.close()



def search_terms(query: str) -> list[str]:
    """The whole query and its words (short words dropped unless they are all there is), casefolded."""
    phrase = " ".join(query.split()).casefold()
    words = WORD.findall(phrase)
    long_words = [w for w in words if len(w) >= MIN_WORD_CHARS] or words
    return list(dict.fromkeys([phrase, *long_words])) if phrase else []


def matches(content: str, needles: list[str]) -> bool:
    text = " ".join(content.split()).casefold()
    return any(needle in text for needle in needles)
