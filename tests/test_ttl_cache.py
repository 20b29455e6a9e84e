"""The read-through cache behind keys, gateways and chat clients: an eviction is never undone by a
read that was already under way (a revoked key must not be cached again from a read before the revoke)."""

from __future__ import annotations

import asyncio

from botline.ttl_cache import TtlCache


async def test_a_value_read_before_an_eviction_is_returned_but_not_kept() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl=60)
    stored = {"key": "before the edit"}
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_read() -> str:
        value = stored["key"]
        reading.set()
        await release.wait()  # the store answered; the eviction signal arrives before the insert
        return value

    pending = asyncio.create_task(cache.get("key", slow_read))
    await reading.wait()
    stored["key"] = "after the edit"
    cache.forget(lambda value: True)
    release.set()
    assert await pending == "before the edit"  # that caller asked before the edit

    async def read() -> str:
        return stored["key"]

    assert await cache.get("key", read) == "after the edit"


async def test_a_cached_value_is_reused_until_it_is_forgotten() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl=60)
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    assert [await cache.get("k", read), await cache.get("k", read)] == [1, 1]
    cache.forget(lambda value: value == 1)
    assert await cache.get("k", read) == 2
