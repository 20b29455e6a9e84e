"""MemoryService over a real SQLite store with a frozen clock: scoping, search, retention and the purge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botline.domain.clock import FrozenClock
from botline.domain.memory import DateReminder, InvalidMemory, MemoryFormat, MemoryFull
from botline.memory.service import MemoryService, matches, search_terms
from botline.store import Store, open_store

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ACCOUNT = "account-1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await open_store(f"sqlite:///{tmp_path / 'memories.db'}") as opened:
        yield opened


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def service(store: Store, clock: FrozenClock) -> MemoryService:
    return MemoryService(store, clock)


def test_search_terms_are_the_phrase_and_its_longer_words() -> None:
    assert search_terms("  Dog's  NAME ") == ["dog's name", "dog", "name"]
    assert search_terms("a b") == ["a b", "a", "b"]
    assert search_terms("   ") == []
    assert matches("The user's DOG is called Rex", search_terms("dog name"))
    assert not matches("Likes tea", search_terms("dog name"))


async def test_search_is_case_insensitive_most_recent_first_and_bounded(
    service: MemoryService, clock: FrozenClock
) -> None:
    saved = []
    for i in range(25):
        saved.append(await service.save(ACCOUNT, "u1", f"Pet number {i}", None))
        clock.advance(timedelta(minutes=1))
    await service.save(ACCOUNT, "u2", "pet of someone else", None)
    found = await service.search(ACCOUNT, "u1", "PET")
    assert [m.id for m in found] == [m.id for m in reversed(saved)][:20]
    assert await service.search(ACCOUNT, "u1", "cat") == []


async def test_find_and_remove_are_scoped_to_the_user_and_format(service: MemoryService) -> None:
    memory = await service.save(ACCOUNT, "u1", "Likes tea", None)
    assert await service.find(ACCOUNT, "u2", memory.id, MemoryFormat.TEXT) is None
    assert await service.find("other-account", "u1", memory.id, MemoryFormat.TEXT) is None
    assert await service.find(ACCOUNT, "u1", memory.id, MemoryFormat.DATE_REMINDER) is None
    assert await service.remove(ACCOUNT, "u2", memory.id, MemoryFormat.TEXT) is False
    assert await service.remove(ACCOUNT, "u1", memory.id, MemoryFormat.TEXT) is True


async def test_rewrite_keeps_the_expiry_unless_a_retention_is_given(service: MemoryService, clock: FrozenClock) -> None:
    memory = await service.save(ACCOUNT, "u1", "v1", 10)
    clock.advance(timedelta(days=5))
    kept = await service.rewrite(memory, "v2", None)
    assert kept is not None and kept.expires_at == START + timedelta(days=10) and kept.updated_at == clock.now()
    renewed = await service.rewrite(kept, "v3", 10)
    assert renewed is not None and renewed.expires_at == clock.now() + timedelta(days=10)
    with pytest.raises(InvalidMemory):
        await service.rewrite(renewed, "x" * 10241, None)


async def test_an_expired_memory_cannot_be_found_or_rewritten(service: MemoryService, clock: FrozenClock) -> None:
    memory = await service.save(ACCOUNT, "u1", "short-lived", 1)
    clock.advance(timedelta(days=1))
    assert await service.find(ACCOUNT, "u1", memory.id, MemoryFormat.TEXT) is None
    assert await service.recent(ACCOUNT, "u1", MemoryFormat.TEXT) == []


async def test_a_reminder_update_stretches_the_expiry_when_the_event_moves_later(service: MemoryService) -> None:
    reminder = DateReminder(title="Call", start="2026-12-01T10:00", timezone="UTC")
    memory = await service.save_reminder(ACCOUNT, "u1", reminder, None)
    assert memory.expires_at == START + timedelta(days=30)
    later = reminder.model_copy(update={"start": "2027-02-01T10:00"})
    moved = await service.rewrite_reminder(memory, later, None)
    assert moved is not None and moved.expires_at == datetime(2027, 2, 2, 10, 0, tzinfo=UTC)


async def test_purge_once_empties_every_batch(store: Store, service: MemoryService, clock: FrozenClock) -> None:
    for i in range(3):
        await service.save(ACCOUNT, f"u{i}", "gone soon", 1)
    kept = await service.save(ACCOUNT, "u9", "kept", 30)
    clock.advance(timedelta(days=2))
    assert await service.purge_once() == 3
    assert [m.id for m in await store.memories.list_for_account(ACCOUNT, now=START)] == [kept.id]


async def test_the_purge_task_starts_once_and_closes_cleanly(service: MemoryService) -> None:
    await service.start_purging()
    await service.start_purging()
    await service.close()
    await service.close()


async def test_l8_a_user_holds_at_most_max_per_user_memories(store: Store, clock: FrozenClock) -> None:
    service = MemoryService(store, clock, max_per_user=3)
    notes = [await service.save(ACCOUNT, "u1", f"note {i}", 1) for i in range(2)]
    await service.save_reminder(ACCOUNT, "u1", DateReminder(title="Dentist", start="2026-12-01T15:00",
                                                            timezone="UTC"), None)
    with pytest.raises(MemoryFull, match="already has 3 saved memories"):
        await service.save(ACCOUNT, "u1", "one too many", None)
    with pytest.raises(MemoryFull):
        await service.save_reminder(ACCOUNT, "u1", DateReminder(title="Gym", start="2026-12-02T08:00",
                                                                timezone="UTC"), None)
    assert len(await service.recent(ACCOUNT, "u1", MemoryFormat.TEXT)) == 2
    await service.save(ACCOUNT, "u2", "another user is not affected", None)
    assert await service.remove(ACCOUNT, "u1", notes[0].id, MemoryFormat.TEXT)
    await service.save(ACCOUNT, "u1", "room again after a removal", None)
    clock.advance(timedelta(days=1))  # the notes kept for one day expire and stop counting
    await service.save(ACCOUNT, "u1", "room again after an expiry", None)


async def test_l8_search_reads_only_the_users_most_recent_max_per_user_memories(
    service: MemoryService, store: Store, clock: FrozenClock
) -> None:
    """Memories stored before a lower cap (or by racing saves) stay, but a search never loads them all."""
    older = [await service.save(ACCOUNT, "u1", f"pet {i}", None) for i in range(4)]
    newer = []
    for i in (4, 5):
        clock.advance(timedelta(minutes=1))
        newer.append(await service.save(ACCOUNT, "u1", f"pet {i}", None))
    capped = MemoryService(store, clock, max_per_user=2)
    assert [m.id for m in await capped.search(ACCOUNT, "u1", "pet")] == [m.id for m in reversed(newer)]
    assert len(await capped.recent(ACCOUNT, "u1", MemoryFormat.TEXT)) == 2
    assert len(await service.search(ACCOUNT, "u1", "pet")) == len(older) + len(newer)
