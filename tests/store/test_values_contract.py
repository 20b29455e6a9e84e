"""The Store contract for shared server values and in-flight reservations (every backend)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from botline.store import Store

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


async def test_the_first_value_kept_wins_even_when_replicas_start_together(store: Store) -> None:
    kept = await asyncio.gather(*(store.server_values.keep("link-secret", f"value-{n}") for n in range(5)))
    assert len(set(kept)) == 1 and kept[0].startswith("value-")
    assert await store.server_values.keep("link-secret", "later") == kept[0]
    assert await store.server_values.keep("other", "x") == "x"


async def test_reservations_add_up_per_scope_until_released_or_expired(store: Store) -> None:
    await store.reservations.add("acct", "a", 100, now=T0, ttl_seconds=600)
    await store.reservations.add("acct", "b", 50, now=T0, ttl_seconds=60)
    await store.reservations.add("other", "a", 7, now=T0, ttl_seconds=600)
    assert await store.reservations.total("acct", now=T0) == 150
    assert await store.reservations.total("acct", now=T0 + timedelta(minutes=2)) == 100
    await store.reservations.release("acct", "a")
    await store.reservations.release("acct", "missing")
    assert await store.reservations.total("acct", now=T0) == 0
    assert await store.reservations.total("other", now=T0) == 7
    assert await store.reservations.total("nobody", now=T0) == 0
