"""Redis: shared server values (SET NX) and in-flight byte reservations (store/base.py says what each promises).

A scope's reservations are a sorted set of ids scored by expiry (the caller's clock) plus a hash of their
amounts; a total drops the expired ones first. Both keys expire a TTL after the latest reservation (Redis's
clock), so nothing is left behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from botline.store.base import ReservationRepository, ServerValueRepository
from botline.store.redis_base import _reachable_methods, _Repo


@_reachable_methods
class RedisServerValues(_Repo, ServerValueRepository):
    async def keep(self, name: str, value: str) -> str:
        key = self._keys.server_value(name)
        await self._redis.set(key, value, nx=True)
        return cast(str, await self._redis.get(key))


@_reachable_methods
class RedisReservations(_Repo, ReservationRepository):
    async def add(self, scope: str, reservation_id: str, amount: int, *, now: datetime, ttl_seconds: int) -> None:
        ids, amounts = self._keys.reservations(scope), self._keys.reservation_amounts(scope)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(ids, {reservation_id: now.timestamp() + ttl_seconds})
            pipe.hset(amounts, reservation_id, str(amount))
            for key in (ids, amounts):  # the keys outlive their latest reservation (Redis's own clock)
                pipe.expire(key, ttl_seconds, gt=True)
                pipe.expire(key, ttl_seconds, nx=True)
            await pipe.execute()

    async def release(self, scope: str, reservation_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.reservations(scope), reservation_id)
            pipe.hdel(self._keys.reservation_amounts(scope), reservation_id)
            await pipe.execute()

    async def total(self, scope: str, *, now: datetime) -> int:
        ids, amounts = self._keys.reservations(scope), self._keys.reservation_amounts(scope)
        expired = cast(list[str], await self._redis.zrangebyscore(ids, "-inf", now.timestamp()))
        if expired:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(ids, *expired)
                pipe.hdel(amounts, *expired)
                await pipe.execute()
        live = cast(list[str], await self._redis.zrange(ids, 0, -1))
        if not live:
            return 0
        values = cast(list[str | None], await self._redis.hmget(amounts, live))
        return sum(int(value) for value in values if value is not None)
