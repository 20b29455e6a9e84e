"""Redis repository of scheduled continuations.

An item is a JSON string; each chat client's items are a sorted set by creation time; the active
ones are a sorted set by next activation (what replicas load as it comes due). A firing is claimed
with SET NX on (item, fire time), kept far longer than any firing could be retried.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from redis.asyncio.client import Pipeline

from botline.domain.schedules import ScheduledItem
from botline.store.base import ScheduleRepository
from botline.store.redis_base import _dump, _epoch_seconds, _fetch, _reachable_methods, _Repo, _score

CLAIM_SECONDS = 400 * 24 * 3600
"""Longer than the longest schedule horizon (365 days), so a claim outlives every retry of its firing."""


@_reachable_methods
class RedisSchedules(_Repo, ScheduleRepository):
    def _write(self, pipe: Pipeline, item: ScheduledItem) -> None:
        pipe.set(self._keys.schedule(item.id), _dump(item))
        if item.active and item.next_activation is not None:
            pipe.zadd(self._keys.schedules_active(), {item.id: _epoch_seconds(item.next_activation)})
        else:
            pipe.zrem(self._keys.schedules_active(), item.id)

    async def create(self, item: ScheduledItem) -> None:
        def writes(pipe: Pipeline) -> None:
            self._write(pipe, item)
            pipe.zadd(self._keys.schedules_of_client(item.account_id, item.chat_client_id),
                      {item.id: _score(item.created_at)})

        await self._insert([self._keys.schedule(item.id)], f"schedule {item.id}", writes)

    async def get(self, account_id: str, item_id: str) -> ScheduledItem | None:
        item = await self._get(ScheduledItem, self._keys.schedule(item_id))
        return item if item is not None and item.account_id == account_id else None

    async def update(self, item: ScheduledItem) -> None:
        key = self._keys.schedule(item.id)

        async def body(pipe: Pipeline) -> None:
            stored = await _fetch(pipe, ScheduledItem, key)
            pipe.multi()
            if stored is not None and stored.account_id == item.account_id:
                self._write(pipe, item)

        await self._atomic(body, key)

    async def delete(self, account_id: str, item_id: str) -> bool:
        key = self._keys.schedule(item_id)

        async def body(pipe: Pipeline) -> bool:
            stored = await _fetch(pipe, ScheduledItem, key)
            pipe.multi()
            if stored is None or stored.account_id != account_id:
                return False
            pipe.delete(key)
            pipe.zrem(self._keys.schedules_active(), item_id)
            pipe.zrem(self._keys.schedules_of_client(account_id, stored.chat_client_id), item_id)
            return True

        return await self._atomic(body, key)

    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[ScheduledItem]:
        return await self._indexed(
            ScheduledItem, self._keys.schedules_of_client(account_id, chat_client_id), self._keys.schedule
        )

    async def due(self, before: datetime) -> list[ScheduledItem]:
        ids = cast(list[str], await self._redis.zrangebyscore(
            self._keys.schedules_active(), "-inf", _epoch_seconds(before)))
        if not ids:
            return []
        raws = await self._redis.mget([self._keys.schedule(item_id) for item_id in ids])
        items = [ScheduledItem.model_validate_json(raw) for raw in raws if raw is not None]
        return [i for i in items if i.active]

    async def claim(self, item_id: str, fire_time: datetime) -> bool:
        key = self._keys.schedule_claim(item_id, str(_score(fire_time)))
        return bool(await self._redis.set(key, "1", nx=True, ex=CLAIM_SECONDS))
