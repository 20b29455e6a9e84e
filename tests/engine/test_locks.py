"""One holder at a time per name, in one process and between two processes' worth of lock objects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from botline.engine.locks import LeaseLost, SessionLocks, Taker
from botline.store import Store, open_store
from botline.store.base import LockRepository, StoreError
from botline.store.redis import RedisStore
from tests.support.redis_server import OwnRedis, unique_prefix

BUSY_MICROSECONDS = 400_000
BUSY_SCRIPT = """
local start = redis.call('TIME')
repeat
    local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1])
"""


async def test_holders_never_overlap_and_keep_fifo_order_in_a_process(store: Store) -> None:
    locks = SessionLocks(store.locks)
    inside, order = 0, []

    async def work(n: int) -> None:
        nonlocal inside
        async with locks.hold("chat:a"):
            inside += 1
            assert inside == 1
            order.append(n)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(work(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]


def with_history(store: Store) -> Taker:
    """How a web chat turn takes its session's lease: with the session's history read in the same call."""

    async def take(name: str, ttl_seconds: float) -> str | None:
        leased = await store.sessions.lease_with_messages("account", "session", name, ttl_seconds=ttl_seconds)
        return None if leased is None else leased.token

    return take


async def test_two_replicas_never_hold_the_same_name_at_once(store: Store) -> None:
    replica_a, replica_b = SessionLocks(store.locks), SessionLocks(store.locks)  # separate local locks
    events: list[str] = []

    async def work(locks: SessionLocks, name: str) -> None:
        async with locks.hold("chat:shared", taking=with_history(store) if name == "a" else None):
            events.append(f"{name} in")
            await asyncio.sleep(0.05)
            events.append(f"{name} out")

    await asyncio.gather(work(replica_a, "a"), work(replica_b, "b"))
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_a_long_holder_keeps_its_lease(store: Store) -> None:
    locks = SessionLocks(store.locks, lease_seconds=0.3)
    other = SessionLocks(store.locks, lease_seconds=0.3)
    async with locks.hold("chat:long"):
        await asyncio.sleep(0.5)  # longer than the lease: refreshed meanwhile
        assert await store.locks.acquire("chat:long", ttl_seconds=1) is None
    async with other.hold("chat:long"):
        pass


class Reclaims(LockRepository):
    """The store's leases, telling when a refresher took a lease back."""

    def __init__(self, leases: LockRepository) -> None:
        self._leases = leases
        self.immediate = leases.immediate  # type: ignore[misc]
        self.taken_back = asyncio.Event()

    async def acquire(self, name: str, *, ttl_seconds: float) -> str | None:
        return await self._leases.acquire(name, ttl_seconds=ttl_seconds)

    async def refresh(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        return await self._leases.refresh(name, token, ttl_seconds=ttl_seconds)

    async def reclaim(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        taken = await self._leases.reclaim(name, token, ttl_seconds=ttl_seconds)
        self.taken_back.set()
        return taken

    async def release(self, name: str, token: str) -> None:
        await self._leases.release(name, token)


async def test_a_lease_freed_by_the_holders_last_write_is_at_once_free_and_not_freed_again(store: Store) -> None:
    """The web chat's answer write frees its session lease (add_messages(freeing=...)): another
    replica may take it from then on, and the first holder's exit leaves that holder alone."""
    locks = SessionLocks(store.locks)
    async with locks.hold("chat:freed") as lease:
        freeing = lease.freeing()
        await store.locks.release(freeing.name, freeing.token)  # what the write does with it
        lease.freed = True
        assert await store.locks.acquire("chat:freed", ttl_seconds=30) is not None  # another replica
    assert await store.locks.acquire("chat:freed", ttl_seconds=30) is None  # still that replica's


async def test_a_freed_lease_that_a_refresher_took_back_is_released_at_the_end(store: Store) -> None:
    """A turn longer than a third of the lease: its refresher can find the freed lease gone and take
    it back; the holder's exit then releases it, or the session would stay locked for a lease."""
    leases = Reclaims(store.locks)
    locks = SessionLocks(leases, lease_seconds=0.3)
    async with locks.hold("chat:race") as lease:
        await store.locks.release(lease.name, lease.token)
        lease.freed = True
        await leases.taken_back.wait()  # the refresher (due at 0.1 s) found it gone
        assert await store.locks.acquire("chat:race", ttl_seconds=30) is None
    assert await store.locks.acquire("chat:race", ttl_seconds=30) is not None


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[OwnRedis, Store]]:
    """A redis-server this test may kill and pause, and a store on it."""
    with OwnRedis(tmp_path) as own:
        async with await open_store(own.url, redis_prefix=unique_prefix()) as opened:
            yield own, opened


async def test_a_store_outage_of_two_refreshes_does_not_let_another_replica_in(
    own_redis: tuple[OwnRedis, Store]
) -> None:
    """Redis restarts while a turn runs: the holder keeps its lease, so no other replica answers the
    same chat at the same time (1/10 of the real lease: 1.5 s, refreshed every 0.5 s)."""
    own, store = own_redis
    locks = SessionLocks(store.locks, lease_seconds=1.5)
    async with locks.hold("chat:busy") as lease:
        await asyncio.sleep(0.6)  # refreshed once, at 0.5 s
        own.kill()
        await asyncio.sleep(1.0)  # the refreshes due at 1.0 s and 1.5 s fail
        await asyncio.to_thread(own.start)
        for _ in range(60):  # another replica tries its luck until past the last refresh's expiry
            with contextlib.suppress(StoreError):
                assert await store.locks.acquire("chat:busy", ttl_seconds=1.5) is None
            await asyncio.sleep(0.02)
        assert not lease.lost


async def test_a_lapsed_lease_is_taken_back_and_one_someone_took_is_lost(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    async with await open_store(redis_url, redis_prefix=unique_prefix()) as store:
        assert isinstance(store, RedisStore)
        locks = SessionLocks(store.locks, lease_seconds=0.3)
        async with locks.hold("chat:lapsed") as kept, locks.hold("chat:taken") as taken:
            # As when an outage outlasted the lease: both keys expired; another replica took one.
            await admin.delete(store.keys.lock("chat:lapsed"), store.keys.lock("chat:taken"))
            assert await store.locks.acquire("chat:taken", ttl_seconds=1) is not None
            await asyncio.sleep(0.2)  # the first refresh is due at 0.1 s
            assert not kept.lost and taken.lost
            assert await store.locks.acquire("chat:lapsed", ttl_seconds=1) is None  # held again
            with pytest.raises(LeaseLost):
                taken.check()
    await admin.aclose()


@pytest.mark.parametrize("history", [False, True], ids=["acquire", "with-history"])
async def test_a_cancel_while_the_lease_is_being_taken_does_not_keep_the_name_locked(
    own_redis: tuple[OwnRedis, Store], history: bool
) -> None:
    own, store = own_redis
    admin = Redis.from_url(own.url)
    locks = SessionLocks(store.locks)  # the full 15 s lease
    taking = with_history(store) if history else None
    try:
        await store.locks.release("chat:cancelled", "no-token")  # a connection is open: the SET is sent at once
        busy = asyncio.ensure_future(admin.eval(BUSY_SCRIPT, 0, BUSY_MICROSECONDS))  # the SET waits behind it
        await asyncio.sleep(BUSY_MICROSECONDS / 4e6)
        holder = asyncio.create_task(locks.hold("chat:cancelled", taking=taking).__aenter__())
        await asyncio.sleep(BUSY_MICROSECONDS / 4e6)
        holder.cancel()  # the SET is sent and is run once the script ends, but its answer goes unread
        await asyncio.gather(holder, busy, return_exceptions=True)
        async with asyncio.timeout(5):  # given back as soon as the SET is answered, not in 15 s
            while await store.locks.acquire("chat:cancelled", ttl_seconds=30) is None:
                await asyncio.sleep(0.02)
    finally:
        await admin.aclose()


async def test_close_ends_releases_still_retried_in_the_background(own_redis: tuple[OwnRedis, Store]) -> None:
    own, store = own_redis
    locks = SessionLocks(store.locks)
    async with locks.hold("chat:orphan"):
        own.kill()  # the release fails and is retried in the background
    await locks.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
