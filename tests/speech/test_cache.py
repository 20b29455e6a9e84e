"""The audio cache: one synthesis for concurrent and repeated asks, bounded by bytes, failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from botline.speech.cache import AudioCache


async def test_concurrent_and_repeated_asks_share_one_call() -> None:
    cache: AudioCache[bytes] = AudioCache(100, len)
    calls = 0

    async def make() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return b"x" * 10

    results = await asyncio.gather(*(cache.get_or_make("k", make) for _ in range(5)))
    assert results == [b"x" * 10] * 5 and calls == 1
    assert await cache.get_or_make("k", make) == b"x" * 10 and calls == 1
    assert (cache.hits, cache.misses) == (5, 1)


async def test_least_recently_used_is_dropped_past_the_byte_budget() -> None:
    cache: AudioCache[bytes] = AudioCache(25, len)

    async def ten() -> bytes:
        return b"y" * 10

    for key in ("a", "b", "c"):
        await cache.get_or_make(key, ten)
    assert len(cache) == 2  # 30 bytes do not fit in 25: "a" went


async def test_a_failure_is_not_cached() -> None:
    cache: AudioCache[bytes] = AudioCache(100, len)

    async def fail() -> bytes:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        await cache.get_or_make("k", fail)

    async def ok() -> bytes:
        return b"z"

    assert await cache.get_or_make("k", ok) == b"z"
