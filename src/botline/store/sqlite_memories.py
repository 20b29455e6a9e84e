"""SQLite repository of per-user memories."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from botline.domain.memory import Memory, MemoryFormat
from botline.store.base import (
    MemoryRepository,
)
from botline.store.sqlite_base import _dump, _Repo, reachable_methods


@reachable_methods
class SqliteMemories(_Repo, MemoryRepository):
    @staticmethod
    def _live(where: str, format: MemoryFormat | None) -> str:
        return f"{where} AND expires_ts > ?" + ("" if format is None else " AND format = ?")

    @staticmethod
    def _params(params: Sequence[Any], now: datetime, format: MemoryFormat | None) -> list[Any]:
        return [*params, now.timestamp(), *([] if format is None else [format.value])]

    async def create(self, memory: Memory) -> None:
        await self._write(
            "INSERT INTO memories (id, account_id, external_user_id, format, updated_ts, expires_ts, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (memory.id, memory.account_id, memory.external_user_id, memory.format.value,
             memory.updated_at.timestamp(), memory.expires_at.timestamp(), _dump(memory)),
        )

    async def get(self, account_id: str, memory_id: str, *, now: datetime) -> Memory | None:
        return await self._one(
            Memory, "SELECT data FROM memories WHERE id = ? AND account_id = ? AND expires_ts > ?",
            (memory_id, account_id, now.timestamp()),
        )

    async def update(self, memory: Memory) -> bool:
        return await self._write(
            "UPDATE memories SET format = ?, updated_ts = ?, expires_ts = ?, data = ?"
            " WHERE id = ? AND account_id = ? AND external_user_id = ?",
            (memory.format.value, memory.updated_at.timestamp(), memory.expires_at.timestamp(), _dump(memory),
             memory.id, memory.account_id, memory.external_user_id),
        ) == 1

    async def _delete_counting_live(self, where: str, params: Sequence[Any], now: datetime) -> int:
        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(f"DELETE FROM memories WHERE {where} RETURNING expires_ts", params).fetchall()

        rows = await self._run(work)
        return sum(1 for row in rows if row[0] > now.timestamp())

    async def delete(self, account_id: str, memory_id: str, *, now: datetime) -> bool:
        return await self._delete_counting_live("id = ? AND account_id = ?", (memory_id, account_id), now) > 0

    async def list_for_user(
        self, account_id: str, external_user_id: str, *, now: datetime, format: MemoryFormat | None = None,
        limit: int | None = None,
    ) -> list[Memory]:
        where = self._live("account_id = ? AND external_user_id = ?", format)
        params = self._params((account_id, external_user_id), now, format)
        return await self._all(
            Memory, f"SELECT data FROM memories WHERE {where} ORDER BY updated_ts DESC, id DESC LIMIT ?",
            [*params, -1 if limit is None else limit],
        )

    async def count_for_user(self, account_id: str, external_user_id: str, *, now: datetime) -> int:
        rows = await self._rows(
            "SELECT COUNT(*) FROM memories WHERE account_id = ? AND external_user_id = ? AND expires_ts > ?",
            (account_id, external_user_id, now.timestamp()),
        )
        return int(rows[0][0])

    async def list_for_account(
        self, account_id: str, *, now: datetime, format: MemoryFormat | None = None
    ) -> list[Memory]:
        where = self._live("account_id = ?", format)
        return await self._all(
            Memory, f"SELECT data FROM memories WHERE {where} ORDER BY updated_ts DESC, id DESC",
            self._params((account_id,), now, format),
        )

    async def delete_for_user(
        self, account_id: str, external_user_id: str, format: MemoryFormat, *, now: datetime
    ) -> int:
        prefix = external_user_id + "@"
        return await self._delete_counting_live(
            "account_id = ? AND format = ? AND (external_user_id = ? OR substr(external_user_id, 1, ?) = ?)",
            (account_id, format.value, external_user_id, len(prefix), prefix), now,
        )

    async def purge(self, now: datetime, *, limit: int = 500) -> int:
        return await self._write(
            "DELETE FROM memories WHERE id IN (SELECT id FROM memories WHERE expires_ts <= ? LIMIT ?)",
            (now.timestamp(), limit),
        )
