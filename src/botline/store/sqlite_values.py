"""SQLite: shared server values and in-flight byte reservations (store/base.py says what each promises)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from botline.store.base import ReservationRepository, ServerValueRepository
from botline.store.sqlite_base import _Repo, reachable_methods


@reachable_methods
class SqliteServerValues(_Repo, ServerValueRepository):
    async def keep(self, name: str, value: str) -> str:
        def work(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO server_values (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                         (name, value))
            return str(conn.execute("SELECT value FROM server_values WHERE name = ?", (name,)).fetchone()[0])

        return await self._run(work)


@reachable_methods
class SqliteReservations(_Repo, ReservationRepository):
    async def add(self, scope: str, reservation_id: str, amount: int, *, now: datetime, ttl_seconds: int) -> None:
        await self._write("INSERT INTO reservations (scope, id, amount, expires_at) VALUES (?, ?, ?, ?)"
                          " ON CONFLICT (scope, id) DO UPDATE SET amount = excluded.amount,"
                          " expires_at = excluded.expires_at",
                          (scope, reservation_id, amount, now.timestamp() + ttl_seconds))

    async def release(self, scope: str, reservation_id: str) -> None:
        await self._write("DELETE FROM reservations WHERE scope = ? AND id = ?", (scope, reservation_id))

    async def total(self, scope: str, *, now: datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM reservations WHERE scope = ? AND expires_at <= ?", (scope, now.timestamp()))
            row = conn.execute("SELECT coalesce(sum(amount), 0) FROM reservations WHERE scope = ?",
                               (scope,)).fetchone()
            return int(row[0])

        return await self._run(work)
