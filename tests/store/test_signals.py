"""Signals between processes sharing a store: every backend delivers to its own process; Redis
delivers to every store on the same prefix and keeps listening after its connection is cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from botline.store import Store, StoreUnavailable
from botline.store.redis import RedisStore
from botline.store.redis_signals import FIRST_RETRY_SECONDS
from tests.support.redis_server import unique_prefix

WAIT = 10.0
CLOSE_DEADLINE = 2.0
RECONNECT_SWEEP_STEPS = 24
RECONNECT_SWEEP_STEP_SECONDS = 0.0005
QUIET_SECONDS = 0.2


class Inbox:
    """A signal handler that keeps what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, payload: str) -> None:
        self.received.put_nowait(payload)

    async def next(self) -> str:
        return await asyncio.wait_for(self.received.get(), WAIT)


async def test_a_signal_reaches_the_handlers_of_its_topic_only(store: Store) -> None:
    stops, edits = Inbox(), Inbox()
    await store.signals.subscribe("stop", stops)
    await store.signals.subscribe("edit", edits)
    assert await store.signals.publish("stop", "session-1") == 1
    assert await stops.next() == "session-1"
    await asyncio.sleep(QUIET_SECONDS)
    assert edits.received.empty()


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[RedisStore]]:
    """Two stores on one prefix (two replicas) and one on another prefix (another deployment)."""
    shared, other = unique_prefix(), unique_prefix()
    stores = [await RedisStore.from_url(redis_url, prefix=p) for p in (shared, shared, other)]
    yield stores
    for store in stores:
        await store.close()


async def test_every_replica_on_the_prefix_receives_a_signal(replicas: list[RedisStore]) -> None:
    inboxes = [Inbox() for _ in replicas]
    for store, inbox in zip(replicas, inboxes, strict=True):
        await store.signals.subscribe("stop", inbox)
    assert await replicas[0].signals.publish("stop", "session-1") == 2
    assert [await inboxes[0].next(), await inboxes[1].next()] == ["session-1", "session-1"]
    await asyncio.sleep(QUIET_SECONDS)
    assert inboxes[2].received.empty()


async def test_a_signal_to_an_unreachable_redis_is_a_store_unavailable_error() -> None:
    store = await RedisStore.from_url("redis://127.0.0.1:1/0", prefix=unique_prefix())  # nothing listens there
    try:
        with pytest.raises(StoreUnavailable):
            await store.signals.publish("stop", "session-1")
    finally:
        await store.close()


async def test_the_listener_subscribes_again_after_its_connection_is_cut(
    replicas: list[RedisStore], redis_url: str
) -> None:
    inbox = Inbox()
    listener = replicas[0]
    await listener.signals.subscribe("stop", inbox)
    admin = Redis.from_url(redis_url, decode_responses=True)
    try:
        name = f"{listener.keys.prefix}:signals"
        [client] = [c for c in await admin.client_list() if c["name"] == name]
        await admin.client_kill_filter(_id=client["id"])
        async with asyncio.timeout(WAIT):  # the listener notices the cut and subscribes again
            while await replicas[1].signals.publish("stop", "after the cut") == 0:
                await asyncio.sleep(0.05)
        assert await inbox.next() == "after the cut"
    finally:
        await admin.aclose()



async def test_close_ends_when_it_lands_while_the_listener_reconnects(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Shutdown landing as the subscriber connects again must not hang: redis-py turns that cancel
    into a ConnectionError. The window is about a millisecond wide, so closes are swept across it."""
    admin = Redis.from_url(redis_url, decode_responses=True)
    try:
        for step in range(RECONNECT_SWEEP_STEPS):
            store = await RedisStore.from_url(redis_url, prefix=unique_prefix())
            await store.signals.subscribe("stop", Inbox())
            caplog.clear()
            name = f"{store.keys.prefix}:signals"
            [client] = [c for c in await admin.client_list() if c["name"] == name]
            await admin.client_kill_filter(_id=client["id"])
            async with asyncio.timeout(WAIT):
                while "subscribing again" not in caplog.text:
                    await asyncio.sleep(0.001)
            await asyncio.sleep(FIRST_RETRY_SECONDS + step * RECONNECT_SWEEP_STEP_SECONDS)  # the reconnect
            closing = asyncio.create_task(store.close())  # not awaited: a cancel would end a stuck close
            done, _ = await asyncio.wait({closing}, timeout=CLOSE_DEADLINE)  # under the 5 s heartbeat
            if not done:
                closing.cancel()
                await asyncio.gather(closing, return_exceptions=True)
            assert done, f"close hung (closed {FIRST_RETRY_SECONDS + step * RECONNECT_SWEEP_STEP_SECONDS}s in)"
    finally:
        await admin.aclose()
