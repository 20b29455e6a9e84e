"""SQLite repositories of channels and timing: inbound messages, schedules."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime

from botline.domain.inbound import ChatKey, InboundRecord
from botline.domain.schedules import ScheduledItem
from botline.store.base import (
    InboundRepository,
    ScheduleRepository,
)
from botline.store.sqlite_base import _dump, _Repo, reachable_methods


@reachable_methods
class SqliteInbound(_Repo, InboundRepository):
    async def record(self, record: InboundRecord, *, dedupe_seconds: int) -> bool:
        now, data = time.time(), _dump(record)

        def work(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "DELETE FROM inbound WHERE dedupe_key = ? AND pending = 0 AND expires_ts <= ?",
                (record.dedupe_key, now),
            )
            cursor = conn.execute(
                "INSERT OR IGNORE INTO inbound (id, dedupe_key, chat_key, expires_ts, data) VALUES (?, ?, ?, ?, ?)",
                (record.id, record.dedupe_key, record.chat.text(), now + dedupe_seconds, data),
            )
            return cursor.rowcount == 1

        return await self._run(work)

    async def pending(self, chat: ChatKey) -> list[InboundRecord]:
        return await self._all(
            InboundRecord, "SELECT data FROM inbound WHERE pending = 1 AND chat_key = ? ORDER BY seq", (chat.text(),)
        )

    async def pending_chats(self) -> list[ChatKey]:
        records = await self._all(
            InboundRecord,
            "SELECT data FROM inbound WHERE seq IN (SELECT min(seq) FROM inbound WHERE pending = 1 GROUP BY chat_key)"
            " ORDER BY seq",
            (),
        )
        return [r.chat for r in records]

    async def complete(self, chat: ChatKey, record_ids: Sequence[str]) -> None:
        if record_ids:
            marks = ",".join("?" * len(record_ids))
            await self._write(
                f"UPDATE inbound SET pending = 0 WHERE chat_key = ? AND id IN ({marks})", (chat.text(), *record_ids)
            )

    async def purge(self, now: datetime) -> int:
        return await self._write("DELETE FROM inbound WHERE pending = 0 AND expires_ts <= ?", (now.timestamp(),))


def _next_ts(item: ScheduledItem) -> float | None:
    return item.next_activation.timestamp() if item.next_activation else None


@reachable_methods
class SqliteSchedules(_Repo, ScheduleRepository):
    async def create(self, item: ScheduledItem) -> None:
        await self._write(
            "INSERT INTO schedules (id, account_id, chat_client_id, active, next_ts, created_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item.id, item.account_id, item.chat_client_id, int(item.active), _next_ts(item),
             item.created_at.isoformat(), _dump(item)),
        )

    async def get(self, account_id: str, item_id: str) -> ScheduledItem | None:
        return await self._one(
            ScheduledItem, "SELECT data FROM schedules WHERE id = ? AND account_id = ?", (item_id, account_id)
        )

    async def update(self, item: ScheduledItem) -> None:
        await self._write(
            "UPDATE schedules SET active = ?, next_ts = ?, data = ? WHERE id = ? AND account_id = ?",
            (int(item.active), _next_ts(item), _dump(item), item.id, item.account_id),
        )

    async def delete(self, account_id: str, item_id: str) -> bool:
        return await self._write("DELETE FROM schedules WHERE id = ? AND account_id = ?", (item_id, account_id)) > 0

    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[ScheduledItem]:
        return await self._all(
            ScheduledItem,
            "SELECT data FROM schedules WHERE account_id = ? AND chat_client_id = ? ORDER BY created_at, id",
            (account_id, chat_client_id),
        )

    async def due(self, before: datetime) -> list[ScheduledItem]:
        return await self._all(
            ScheduledItem, "SELECT data FROM schedules WHERE active = 1 AND next_ts <= ? ORDER BY next_ts",
            (before.timestamp(),),
        )

    async def claim(self, item_id: str, fire_time: datetime) -> bool:
        return await self._write(
            "INSERT OR IGNORE INTO schedule_claims (item_id, fire_ts) VALUES (?, ?)", (item_id, fire_time.timestamp())
        ) == 1
