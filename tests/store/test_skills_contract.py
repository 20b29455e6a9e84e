"""The Store contract for skills: every backend (the `store` fixture) passes every test here."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from botline.domain.skills import Skill, SkillOptions
from botline.store import ConflictError, Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE, BOB = "account-alice", "account-bob"


def skill(slug: str, account_id: str = ALICE, *, minutes: int = 0, instructions: str = "Be brief.",
          tools: list[str] | None = None) -> Skill:
    return Skill(account_id=account_id, slug=slug, instructions=instructions,
                 options=SkillOptions(allowed_tools_names=tools or []), created_at=T0 + timedelta(minutes=minutes))


async def test_created_skills_are_listed_oldest_first_and_only_in_their_account(store: Store) -> None:
    second, first, other = skill("b", minutes=2), skill("a", minutes=1), skill("c", BOB)
    for item in (second, first, other):
        await store.skills.create(item)
    assert [s.slug for s in await store.skills.list_for_account(ALICE)] == ["a", "b"]
    assert await store.skills.get(ALICE, first.id) == first
    assert await store.skills.get(ALICE, other.id) is None
    assert await store.skills.get_many(ALICE, [second.id, other.id, "missing", first.id]) == [second, first]


async def test_a_slug_is_unique_per_account(store: Store) -> None:
    await store.skills.create(skill("writer"))
    with pytest.raises(ConflictError):
        await store.skills.create(skill("writer"))
    await store.skills.create(skill("writer", BOB))
    assert len(await store.skills.list_for_account(ALICE)) == 1


async def test_update_keeps_id_and_creation_and_refuses_a_taken_slug(store: Store) -> None:
    original, taken = skill("a"), skill("b", minutes=1)
    await store.skills.create(original)
    await store.skills.create(taken)
    edited = original.model_copy(update={"slug": "a2", "instructions": "New", "created_at": T0 + timedelta(days=9)})
    assert await store.skills.update(edited)
    stored = await store.skills.get(ALICE, original.id)
    assert stored is not None and (stored.slug, stored.instructions, stored.created_at) == ("a2", "New", T0)
    with pytest.raises(ConflictError):
        await store.skills.update(edited.model_copy(update={"slug": "b"}))
    assert (await store.skills.get(ALICE, original.id)) == stored
    await store.skills.create(skill("a"))  # the old slug is free again
    assert not await store.skills.update(skill("x", BOB).model_copy(update={"id": original.id}))


async def test_upsert_creates_then_replaces_by_slug(store: Store) -> None:
    first = skill("writer", instructions="v1")
    assert await store.skills.upsert(first)
    assert not await store.skills.upsert(skill("writer", minutes=5, instructions="v2", tools=["web_search"]))
    [stored] = await store.skills.list_for_account(ALICE)
    assert (stored.id, stored.created_at, stored.instructions) == (first.id, T0, "v2")
    assert stored.options.allowed_tools_names == ["web_search"]


async def test_concurrent_upserts_of_one_slug_leave_one_skill(store: Store) -> None:
    created = await asyncio.gather(*(store.skills.upsert(skill("same", instructions=str(i))) for i in range(8)))
    assert created.count(True) == 1
    assert len(await store.skills.list_for_account(ALICE)) == 1


async def test_delete_and_clear_stay_in_their_account(store: Store) -> None:
    mine, theirs = skill("a"), skill("a", BOB)
    await store.skills.create(mine)
    await store.skills.create(skill("b", minutes=1))
    await store.skills.create(theirs)
    assert not await store.skills.delete(BOB, mine.id)
    assert await store.skills.delete(ALICE, mine.id)
    assert not await store.skills.delete(ALICE, mine.id)
    assert await store.skills.clear(ALICE) == 1
    assert await store.skills.list_for_account(ALICE) == []
    assert await store.skills.list_for_account(BOB) == [theirs]
    await store.skills.create(skill("b"))  # slugs freed by clear
