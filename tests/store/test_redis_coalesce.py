"""The hot-path commands of concurrent Store calls share round trips (store/redis_coalesce.py): each caller
still gets its own reply or error, a Redis that lost its scripts is served again, and a Redis that stops
answering fails every waiting caller within the store's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from botline.store import StoreUnavailable
from botline.store.redis import RedisStore
from botline.store.redis_coalesce import Coalescer
from tests.support.redis_server import delete_prefix, unique_prefix


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    yield redis
    await redis.aclose()


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = unique_prefix()
    yield name
    await delete_prefix(redis_url, name)


async def test_concurrent_callers_each_get_their_own_reply_or_error(client: Redis, prefix: str) -> None:
    coalescer = Coalescer(client)
    await client.set(f"{prefix}:text", "not a number")
    calls = [coalescer.command("INCR", f"{prefix}:n{i % 5}") for i in range(100)]
    calls.insert(50, coalescer.command("INCR", f"{prefix}:text"))
    replies = await asyncio.gather(*calls, return_exceptions=True)
    errors = [reply for reply in replies if isinstance(reply, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], redis_errors.ResponseError)
    assert isinstance(replies[50], redis_errors.ResponseError)
    counts = [reply for reply in replies if not isinstance(reply, Exception)]
    assert sorted(counts) == sorted(list(range(1, 21)) * 5)  # every increment once, none lost or doubled
    assert [int(await client.get(f"{prefix}:n{k}")) for k in range(5)] == [20] * 5


async def test_scripts_are_served_again_after_redis_lost_them(client: Redis, redis_url: str, prefix: str) -> None:
    async with await RedisStore.from_url(redis_url, prefix=prefix) as store:
        assert await store.counters.increment("hits", ttl_seconds=60) == 1
        await client.script_flush()  # as after a Redis restart
        counts = await asyncio.gather(*(store.counters.increment("hits", ttl_seconds=60) for _ in range(30)))
        assert sorted(counts) == list(range(2, 32))


async def test_a_silent_redis_fails_every_waiting_caller_within_the_deadline() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    try:
        async with await RedisStore.from_url(url, timeout_seconds=0.1) as store:
            calls = [store.counters.increment(f"k{i}", ttl_seconds=60) for i in range(10)]
            calls += [store.sessions.lease_with_messages("a", f"s{i}", f"lease{i}", ttl_seconds=15) for i in range(10)]
            outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=30)
            assert [type(outcome) for outcome in outcomes] == [StoreUnavailable] * 20
    finally:
        server.close()
