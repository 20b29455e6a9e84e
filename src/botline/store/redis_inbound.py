"""Redis repositories of the channel side: inbound messages (dedupe + pending queue) and leases.

Same rules as `redis.py`: key names come from `RedisKeys`, every multi-key write runs in one
MULTI/EXEC, and writes that depend on what is stored run under WATCH (retried).

Inbound layout (see `keys.py`): a record is a JSON string; its dedupe key holds
"{deadline ms}:{record id}", where the deadline is the Redis clock at `record` plus
`dedupe_seconds` (the window runs from the recording, as in SQLite). While pending, neither key has
a TTL, so a re-delivery is refused however late it comes. `complete` sets both to expire at the
deadline (PEXPIREAT: a deadline already passed deletes them at once) and indexes the record in
`inbound_answered` by deadline. Redis therefore forgets answered records by itself; `purge(now)`
only removes what is due at `now` but not expired yet (e.g. a `now` ahead of the Redis clock) and
drops the index entries, and returns how many record documents it deleted itself (often 0).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from botline.domain.inbound import ChatKey, InboundRecord
from botline.domain.integrations import IntegrationType
from botline.store.base import InboundRepository, LockRepository
from botline.store.keys import RedisKeys
from botline.store.redis_base import (
    MS_PER_SECOND,
    _dump,
    _epoch_seconds,
    _fetch_many,
    _reachable_methods,
    _Repo,
    lease_token,
    milliseconds,
)

MIN_SCORE = "-inf"
PURGE_BATCH = 500
US_PER_MS = 1000

# Compare-and-set scripts: only the holder of a lease (its token) may extend or free it.
REFRESH_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RECLAIM_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def _chat_member(chat: ChatKey) -> str:
    """A chat as a member of `inbound_chats`: JSON, so any chat id round-trips."""
    return json.dumps([chat.account_id, chat.chat_client_id, chat.integration.value, chat.chat_id])


def _chat_of_member(member: str) -> ChatKey:
    account_id, chat_client_id, integration, chat_id = json.loads(member)
    return ChatKey(account_id, chat_client_id, IntegrationType(integration), chat_id)


def _claim_value(deadline_ms: int, record_id: str) -> str:
    return f"{deadline_ms}:{record_id}"


def _parse_claim(value: str | None) -> tuple[int, str] | None:
    """(deadline ms, record id) of a dedupe key's value; the deadline is an integer, so any id parses."""
    if value is None:
        return None
    deadline, _, record_id = value.partition(":")
    return int(deadline), record_id


@_reachable_methods
class RedisInbound(_Repo, InboundRepository):
    def _pending_key(self, chat: ChatKey) -> str:
        return self._keys.inbound_pending(chat.account_id, chat.chat_client_id, chat.integration.value, chat.chat_id)

    async def record(self, record: InboundRecord, *, dedupe_seconds: int) -> bool:
        """Watches the dedupe key (one of racing replicas wins, the others retry and see it) and the
        chat's pending zset (so the sequence order is the commit order within a chat)."""
        dedupe = self._keys.inbound_dedupe(record.dedupe_key)
        document = self._keys.inbound_record(record.id)
        pending = self._pending_key(record.chat)

        async def body(pipe: Pipeline) -> bool:
            if await pipe.exists(dedupe, document):
                return False
            seconds, microseconds = await pipe.time()
            deadline_ms = seconds * MS_PER_SECOND + microseconds // US_PER_MS + dedupe_seconds * MS_PER_SECOND
            sequence = int(await pipe.incr(self._keys.inbound_sequence()))
            pipe.multi()
            pipe.set(dedupe, _claim_value(deadline_ms, record.id))
            pipe.set(document, _dump(record))
            pipe.zadd(pending, {record.id: sequence})
            pipe.zadd(self._keys.inbound_chats(), {_chat_member(record.chat): sequence}, nx=True)
            return True

        return await self._atomic(body, dedupe, document, pending)

    async def pending(self, chat: ChatKey) -> list[InboundRecord]:
        return await self._indexed(InboundRecord, self._pending_key(chat), self._keys.inbound_record)

    async def pending_chats(self) -> list[ChatKey]:
        """Oldest pending message first: each chat is scored by its lowest pending sequence."""
        members = cast(list[str], await self._redis.zrange(self._keys.inbound_chats(), 0, -1))
        return [_chat_of_member(member) for member in members]

    async def complete(self, chat: ChatKey, record_ids: Sequence[str]) -> None:
        """Under WATCH of the chat's pending zset: ids not pending in this chat are ignored."""
        pending = self._pending_key(chat)
        member = _chat_member(chat)

        async def body(pipe: Pipeline) -> None:
            entries = cast(list[tuple[str, float]], await pipe.zrange(pending, 0, -1, withscores=True))
            pending_ids = {record_id for record_id, _ in entries}
            done = [record_id for record_id in dict.fromkeys(record_ids) if record_id in pending_ids]
            if not done:
                return
            documents = [self._keys.inbound_record(record_id) for record_id in done]
            claims = await self._claims(pipe, documents)
            remaining = [score for record_id, score in entries if record_id not in done]
            pipe.multi()
            pipe.zrem(pending, *done)
            for record_id, document, claim in zip(done, documents, claims, strict=True):
                owner = None if claim is None else claim[1]
                if claim is None or owner is None or owner[1] != record_id:
                    pipe.delete(document)  # inconsistent leftovers: there is no window to keep
                    continue
                deadline_ms = owner[0]
                pipe.pexpireat(claim[0], deadline_ms)
                pipe.pexpireat(document, deadline_ms)
                pipe.zadd(self._keys.inbound_answered(), {record_id: deadline_ms / MS_PER_SECOND})
            if remaining:
                pipe.zadd(self._keys.inbound_chats(), {member: min(remaining)})
            else:
                pipe.zrem(self._keys.inbound_chats(), member)

        await self._atomic(body, pending)

    async def _claims(
        self, pipe: Pipeline, documents: list[str], *, watch: bool = False
    ) -> list[tuple[str, tuple[int, str] | None] | None]:
        """Through a watching pipeline, per record document: None when it is gone, else its dedupe
        key and what that key holds (deadline ms, record id), or None there when the key is gone.
        With `watch`, the dedupe keys are watched before they are read."""
        records = await _fetch_many(pipe, InboundRecord, documents)
        dedupes = [None if r is None else self._keys.inbound_dedupe(r.dedupe_key) for r in records]
        present = [dedupe for dedupe in dedupes if dedupe is not None]
        values: dict[str, str | None] = {}
        if present:
            if watch:
                await pipe.watch(*present)
            values = dict(zip(present, cast(list[str | None], await pipe.mget(present)), strict=True))
        return [None if dedupe is None else (dedupe, _parse_claim(values[dedupe])) for dedupe in dedupes]

    async def purge(self, now: datetime) -> int:
        """Forgets answered records whose deadline is at or before `now`, in batches; see the module
        docstring for why the count is usually 0 (the TTLs got there first)."""
        due = _epoch_seconds(now)
        purged = 0
        while True:
            ids = cast(
                list[str],
                await self._redis.zrangebyscore(
                    self._keys.inbound_answered(), MIN_SCORE, due, start=0, num=PURGE_BATCH
                ),
            )
            if ids:
                purged += await self._purge_batch(ids)
            if len(ids) < PURGE_BATCH:
                return purged

    async def _purge_batch(self, ids: list[str]) -> int:
        """Deletes the records (watched, so racing purges count each once) and their dedupe keys
        when these still name them: a key reclaimed by a newer delivery is left alone."""
        documents = [self._keys.inbound_record(record_id) for record_id in ids]

        async def body(pipe: Pipeline) -> int:
            claims = await self._claims(pipe, documents, watch=True)
            pipe.multi()
            pipe.zrem(self._keys.inbound_answered(), *ids)
            deleted = 0
            for record_id, document, claim in zip(ids, documents, claims, strict=True):
                if claim is None:
                    continue  # expired by its TTL already
                pipe.delete(document)
                deleted += 1
                dedupe, owner = claim
                if owner is not None and owner[1] == record_id:
                    pipe.delete(dedupe)
            return deleted

        return await self._atomic(body, *documents)


@_reachable_methods
class RedisLocks(_Repo, LockRepository):
    """One key per lease holding a random token: SET NX PX to take it, scripts to extend, take back or free it."""

    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        super().__init__(client, keys)
        self._refresh_script = client.register_script(REFRESH_SCRIPT)
        self._reclaim_script = client.register_script(RECLAIM_SCRIPT)
        self._release_script = client.register_script(RELEASE_SCRIPT)

    async def acquire(self, name: str, *, ttl_seconds: float) -> str | None:
        token = lease_token()
        taken = await self._redis.set(self._keys.lock(name), token, nx=True, px=milliseconds(ttl_seconds))
        return token if taken else None

    async def refresh(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        extended = await self._refresh_script(keys=[self._keys.lock(name)], args=[token, milliseconds(ttl_seconds)])
        return bool(extended)

    async def reclaim(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        taken = await self._reclaim_script(keys=[self._keys.lock(name)], args=[token, milliseconds(ttl_seconds)])
        return bool(taken)

    async def release(self, name: str, token: str) -> None:
        await self._release_script(keys=[self._keys.lock(name)], args=[token])
