"""The Store contract for LLM connections and their counters (run on SQLite and Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from botline.domain.accounts import ApiKey, KeyScope
from botline.domain.llm_connections import AiType, ConnectionStats, LlmConnection
from botline.store import ConflictError, Store
from botline.store.changes import ConnectionChange

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE, BOB = "account-alice", "account-bob"


def connection(name: str, account_id: str = ALICE, minutes: int = 0) -> LlmConnection:
    return LlmConnection(account_id=account_id, name=name, ai_type=AiType.OPENAI, endpoint="https://llm.example.com/v1",
                         secret="sk-secret", created_at=T0 + timedelta(minutes=minutes))


async def test_created_connection_reads_back_equal_and_only_in_its_account(store: Store) -> None:
    first = connection("main")
    await store.llm_connections.create(first)
    assert await store.llm_connections.get(ALICE, first.id) == first
    assert await store.llm_connections.get(BOB, first.id) is None
    assert await store.llm_connections.list_for_account(BOB) == []


async def test_names_are_unique_per_account(store: Store) -> None:
    await store.llm_connections.create(connection("main"))
    with pytest.raises(ConflictError):
        await store.llm_connections.create(connection("main"))
    await store.llm_connections.create(connection("main", BOB))
    assert [c.name for c in await store.llm_connections.list_for_account(ALICE)] == ["main"]


async def test_list_is_oldest_first(store: Store) -> None:
    for minutes, name in [(2, "c"), (0, "a"), (1, "b")]:
        await store.llm_connections.create(connection(name, minutes=minutes))
    assert [c.name for c in await store.llm_connections.list_for_account(ALICE)] == ["a", "b", "c"]


async def test_change_sets_given_fields_and_clears_with_none(store: Store) -> None:
    stored = connection("main")
    stored.validated_at = T0
    await store.llm_connections.create(stored)
    changed = await store.llm_connections.change(
        ALICE, stored.id, ConnectionChange({"secret": "sk-rotated", "validated_at": None}))
    assert changed is not None and changed.secret == "sk-rotated" and changed.validated_at is None
    assert changed.name == "main" and changed.endpoint == stored.endpoint
    assert await store.llm_connections.get(ALICE, stored.id) == changed


async def test_change_of_another_accounts_connection_is_none(store: Store) -> None:
    stored = connection("main")
    await store.llm_connections.create(stored)
    assert await store.llm_connections.change(BOB, stored.id, ConnectionChange({"secret": "x"})) is None
    assert (await store.llm_connections.get(ALICE, stored.id)) == stored


async def test_renaming_moves_the_name_and_a_taken_name_conflicts(store: Store) -> None:
    first, second = connection("first"), connection("second", minutes=1)
    await store.llm_connections.create(first)
    await store.llm_connections.create(second)
    with pytest.raises(ConflictError):
        await store.llm_connections.change(ALICE, second.id, ConnectionChange({"name": "first"}))
    assert (await store.llm_connections.get(ALICE, second.id)).name == "second"  # type: ignore[union-attr]
    await store.llm_connections.change(ALICE, first.id, ConnectionChange({"name": "renamed"}))
    await store.llm_connections.create(connection("first", minutes=2))  # the old name is free again


async def test_delete_is_scoped_frees_the_name_and_drops_the_counters(store: Store) -> None:
    stored = connection("main")
    await store.llm_connections.create(stored)
    await store.llm_connections.add_stats({(ALICE, stored.id): ConnectionStats(api_calls=3)})
    assert not await store.llm_connections.delete(BOB, stored.id)
    assert await store.llm_connections.delete(ALICE, stored.id)
    assert await store.llm_connections.get(ALICE, stored.id) is None
    assert await store.llm_connections.stats(ALICE) == {}
    await store.llm_connections.create(connection("main"))


async def test_counters_add_up_per_connection_and_account(store: Store) -> None:
    one, two = connection("one"), connection("two", minutes=1)
    for item in (one, two):
        await store.llm_connections.create(item)
    await store.llm_connections.add_stats({
        (ALICE, one.id): ConnectionStats(api_calls=1, tokens_in=10, llm_tokens_in=10, blocks=1),
        (ALICE, two.id): ConnectionStats(api_calls=2, tokens_out=5),
    })
    await store.llm_connections.add_stats({(ALICE, one.id): ConnectionStats(api_calls=1, tokens_in=4,
                                                                           policy_tokens_in=4, alerts=2)})
    stats = await store.llm_connections.stats(ALICE)
    assert stats[one.id] == ConnectionStats(api_calls=2, tokens_in=14, llm_tokens_in=10, policy_tokens_in=4,
                                            alerts=2, blocks=1)
    assert stats[two.id] == ConnectionStats(api_calls=2, tokens_out=5)
    assert await store.llm_connections.stats(BOB) == {}


async def test_a_keys_scope_is_stored_with_it(store: Store) -> None:
    key = ApiKey(account_id=ALICE, key_hash="h" * 64, key_tail="hhhh",
                 scope=KeyScope(gateways=["g-1"], requests_per_minute=7))
    await store.api_keys.create(key)
    assert await store.api_keys.get_by_hash("h" * 64) == key
