"""Redis repository of per-user memories.

Same rules as `redis.py`: JSON documents plus index keys named by `RedisKeys`, every multi-key
write in one MULTI/EXEC, and writes that depend on what is stored run under WATCH (retried).
Indexes per memory: the account's zset and the user's zset (both by updated_at, so a descending
range is "most recent first" with ties broken by the highest id, like SQLite's `ORDER BY
updated_ts DESC, id DESC`), and the global expiry zset (epoch seconds) the purge walks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from redis.asyncio.client import Pipeline

from botline.domain.memory import Memory, MemoryFormat
from botline.store.base import MemoryRepository
from botline.store.redis_base import _dump, _epoch_seconds, _fetch, _fetch_many, _reachable_methods, _Repo, _score

MIN_SCORE = "-inf"
PAGE_MIN = 64
"""A limited read of a user's index fetches at least this many ids at a time (expired ones are skipped)."""


@_reachable_methods
class RedisMemories(_Repo, MemoryRepository):
    def _index(self, pipe: Pipeline, memory: Memory) -> None:
        """Inside MULTI: (re)scores the memory in its account, user and expiry indexes."""
        updated = _score(memory.updated_at)
        pipe.zadd(self._keys.memories_of_account(memory.account_id), {memory.id: updated})
        pipe.zadd(self._keys.memories_of_user(memory.account_id, memory.external_user_id), {memory.id: updated})
        pipe.zadd(self._keys.memories_by_expiry(), {memory.id: _epoch_seconds(memory.expires_at)})

    def _drop(self, pipe: Pipeline, memory: Memory) -> None:
        """Inside MULTI: deletes the document (first, so its reply says whether this caller removed it)
        and every index entry."""
        pipe.delete(self._keys.memory(memory.id))
        pipe.zrem(self._keys.memories_of_account(memory.account_id), memory.id)
        pipe.zrem(self._keys.memories_of_user(memory.account_id, memory.external_user_id), memory.id)
        pipe.zrem(self._keys.memories_by_expiry(), memory.id)

    async def _drop_all(self, memories: Sequence[Memory], now: datetime) -> int:
        """Deletes `memories` in one MULTI; counts the live ones this call actually removed."""
        if not memories:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            for memory in memories:
                self._drop(pipe, memory)
            replies = await pipe.execute()
        removed = replies[::4]
        return sum(1 for memory, gone in zip(memories, removed, strict=True) if gone and memory.is_live(now))

    async def _documents(self, ids: Sequence[str]) -> list[Memory]:
        if not ids:
            return []
        raws = await self._redis.mget([self._keys.memory(memory_id) for memory_id in ids])
        return [Memory.model_validate_json(raw) for raw in raws if raw is not None]

    async def _newest_first(self, index: str) -> list[Memory]:
        return await self._documents(cast(list[str], await self._redis.zrange(index, 0, -1, desc=True)))

    async def create(self, memory: Memory) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.memory(memory.id), _dump(memory))
            self._index(pipe, memory)

        await self._insert([self._keys.memory(memory.id)], f"memory {memory.id}", writes)

    async def get(self, account_id: str, memory_id: str, *, now: datetime) -> Memory | None:
        memory = await self._get(Memory, self._keys.memory(memory_id))
        if memory is None or memory.account_id != account_id or not memory.is_live(now):
            return None
        return memory

    async def update(self, memory: Memory) -> bool:
        doc_key = self._keys.memory(memory.id)

        async def body(pipe: Pipeline) -> bool:
            old = await _fetch(pipe, Memory, doc_key)
            if old is None or (old.account_id, old.external_user_id) != (memory.account_id, memory.external_user_id):
                return False
            pipe.multi()
            pipe.set(doc_key, _dump(memory))
            self._index(pipe, memory)
            return True

        return await self._atomic(body, doc_key)

    async def delete(self, account_id: str, memory_id: str, *, now: datetime) -> bool:
        # The account and user of an id never change, so the indexes to clean are known without WATCH.
        memory = await self._get(Memory, self._keys.memory(memory_id))
        if memory is None or memory.account_id != account_id:
            return False
        return await self._drop_all([memory], now) > 0

    async def list_for_user(
        self, account_id: str, external_user_id: str, *, now: datetime, format: MemoryFormat | None = None,
        limit: int | None = None,
    ) -> list[Memory]:
        index = self._keys.memories_of_user(account_id, external_user_id)
        if limit is None:
            return [m for m in await self._newest_first(index) if m.is_live(now) and format in (None, m.format)]
        live: list[Memory] = []
        page, start = max(limit, PAGE_MIN), 0
        while len(live) < limit:
            ids = cast(list[str], await self._redis.zrange(index, start, start + page - 1, desc=True))
            live += [m for m in await self._documents(ids) if m.is_live(now) and format in (None, m.format)]
            if len(ids) < page:
                break
            start += page
        return live[:limit]

    async def count_for_user(self, account_id: str, external_user_id: str, *, now: datetime) -> int:
        """Counted on the expiry index (one score per id), so no document is read."""
        index = self._keys.memories_of_user(account_id, external_user_id)
        ids = cast(list[str], await self._redis.zrange(index, 0, -1))
        if not ids:
            return 0
        expiries = await self._redis.zmscore(self._keys.memories_by_expiry(), ids)
        return sum(1 for expiry in expiries if expiry is not None and expiry > _epoch_seconds(now))

    async def list_for_account(
        self, account_id: str, *, now: datetime, format: MemoryFormat | None = None
    ) -> list[Memory]:
        memories = await self._newest_first(self._keys.memories_of_account(account_id))
        return [m for m in memories if m.is_live(now) and format in (None, m.format)]

    async def delete_for_user(
        self, account_id: str, external_user_id: str, format: MemoryFormat, *, now: datetime
    ) -> int:
        prefix = external_user_id + "@"
        memories = await self._newest_first(self._keys.memories_of_account(account_id))
        doomed = [
            m for m in memories
            if m.format == format and (m.external_user_id == external_user_id or m.external_user_id.startswith(prefix))
        ]
        return await self._drop_all(doomed, now)

    async def purge(self, now: datetime, *, limit: int = 500) -> int:
        due = cast(list[str], await self._redis.zrangebyscore(
            self._keys.memories_by_expiry(), MIN_SCORE, _epoch_seconds(now), start=0, num=limit
        ))
        if not due:
            return 0
        doc_keys = [self._keys.memory(memory_id) for memory_id in due]

        async def body(pipe: Pipeline) -> int:
            # Watched: an update in between may have extended a memory, which must then stay.
            found = await _fetch_many(pipe, Memory, doc_keys)
            expired = [m for m in found if m is not None and not m.is_live(now)]
            orphans = [memory_id for memory_id, m in zip(due, found, strict=True) if m is None]
            pipe.multi()
            for memory in expired:
                self._drop(pipe, memory)
            if orphans:
                pipe.zrem(self._keys.memories_by_expiry(), *orphans)
            return len(expired)

        return await self._atomic(body, *doc_keys)
