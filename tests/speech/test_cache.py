"""The audio cache: one synthesis for concurrent asks, read from its first byte by whoever joins while it
runs, then shared through the Store with any replica until its TTL; failures are not kept. Run on both
Store backends (the `store` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from botline.domain.clock import FrozenClock
from botline.speech.cache import AudioCache, AudioFlight
from botline.store import Store

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
TTL = 3600.0


class Speaker:
    """A synthesis whose parts the test releases one by one; counts how often it is asked."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts
        self.calls = 0
        self.go = [asyncio.Event() for _ in parts]

    async def make(self, flight: AudioFlight) -> None:
        self.calls += 1
        flight.content_type = "audio/mpeg"
        for part, go in zip(self.parts, self.go, strict=True):
            await go.wait()
            flight.feed(part)

    def release_all(self) -> None:
        for go in self.go:
            go.set()


async def test_concurrent_asks_share_one_synthesis_and_a_late_listener_reads_from_the_start(store: Store) -> None:
    cache = AudioCache(store.blobs, FrozenClock(T0), ttl_seconds=TTL)
    speaker = Speaker(b"ID3", b"-part2", b"-part3")
    first, made = await cache.open("k", speaker.make)
    assert made
    reader = first.chunks()
    speaker.go[0].set()
    assert await anext(reader) == b"ID3"  # the first part is readable before the rest exists
    late, made_again = await cache.open("k", speaker.make)
    assert late is first and not made_again
    speaker.release_all()
    assert await late.read() == b"ID3-part2-part3" and await first.read() == b"ID3-part2-part3"
    assert speaker.calls == 1


async def test_another_replica_finds_the_audio_in_the_store_until_its_ttl(store: Store) -> None:
    clock = FrozenClock(T0)
    here, there = (AudioCache(store.blobs, clock, ttl_seconds=TTL) for _ in range(2))
    speaker = Speaker(b"ID3-audio")
    speaker.release_all()
    flight, _ = await here.open("k", speaker.make)
    assert await flight.read() == b"ID3-audio"
    found, made = await there.open("k", speaker.make)
    assert not made and found.finished and await found.read() == b"ID3-audio"
    assert found.content_type == "audio/mpeg" and speaker.calls == 1
    clock.advance(timedelta(seconds=TTL))
    again, made = await there.open("k", speaker.make)
    assert made and await again.read() == b"ID3-audio" and speaker.calls == 2  # expired: paid again


async def test_a_failure_reaches_every_listener_and_is_not_kept(store: Store) -> None:
    cache = AudioCache(store.blobs, FrozenClock(T0), ttl_seconds=TTL)

    async def fail(flight: AudioFlight) -> None:
        flight.feed(b"ID3")
        raise ValueError("upstream cut the audio")

    flight, _ = await cache.open("k", fail)
    with pytest.raises(ValueError, match="cut"):
        await flight.read()
    speaker = Speaker(b"ID3-ok")
    speaker.release_all()
    retried, made = await cache.open("k", speaker.make)
    assert made and await retried.read() == b"ID3-ok"


async def test_no_ttl_keeps_nothing(store: Store) -> None:
    cache = AudioCache(store.blobs, FrozenClock(T0), ttl_seconds=0)
    speaker = Speaker(b"ID3")
    speaker.release_all()
    for _ in range(2):
        flight, _ = await cache.open("k", speaker.make)
        await flight.read()
    assert speaker.calls == 2 and await store.blobs.get("k", now=T0) is None
