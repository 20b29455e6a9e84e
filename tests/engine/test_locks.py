"""One holder at a time per name, in one process and between two processes' worth of lock objects."""

from __future__ import annotations

import asyncio

from botline.engine.locks import SessionLocks
from botline.store import Store


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


async def test_two_replicas_never_hold_the_same_name_at_once(store: Store) -> None:
    replica_a, replica_b = SessionLocks(store.locks), SessionLocks(store.locks)  # separate local locks
    events: list[str] = []

    async def work(locks: SessionLocks, name: str) -> None:
        async with locks.hold("chat:shared"):
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
