"""What only the SQLite backend does: a file that survives reopening, migrated once."""

from __future__ import annotations

from pathlib import Path

from botline.domain.accounts import Account
from botline.store.sqlite import SqliteStore


async def test_reopening_the_same_file_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "botline.db")
    alice = Account(name="alice", salt="s")
    async with await SqliteStore.open(path) as first:
        await first.accounts.create(alice)
    for _ in range(2):
        async with await SqliteStore.open(path) as reopened:
            assert await reopened.accounts.get(alice.id) == alice
            assert await reopened.accounts.list() == [alice]
