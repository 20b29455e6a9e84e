"""SQLite repositories of governance: LLM connections and their counters."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from botline.domain.llm_connections import STAT_FIELDS, ConnectionStats, LlmConnection
from botline.domain.policies import Policy, Violation, ViolationQuery
from botline.store.base import LlmConnectionRepository, PolicyRepository
from botline.store.changes import ConnectionChange, PolicyChange
from botline.store.sqlite_base import _dump, _Repo, json_set_fields, reachable_methods

_ADD_STATS = (
    f"INSERT INTO llm_connection_stats (connection_id, account_id, {', '.join(STAT_FIELDS)})"
    f" VALUES (?, ?, {', '.join('?' for _ in STAT_FIELDS)})"
    " ON CONFLICT (connection_id) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in STAT_FIELDS)
)


@reachable_methods
class SqliteLlmConnections(_Repo, LlmConnectionRepository):
    async def create(self, connection: LlmConnection) -> None:
        await self._write(
            "INSERT INTO llm_connections (id, account_id, name, created_at, data) VALUES (?, ?, ?, ?, ?)",
            (connection.id, connection.account_id, connection.name, connection.created_at.isoformat(),
             _dump(connection)),
        )

    async def get(self, account_id: str, connection_id: str) -> LlmConnection | None:
        return await self._one(
            LlmConnection, "SELECT data FROM llm_connections WHERE id = ? AND account_id = ?",
            (connection_id, account_id),
        )

    async def list_for_account(self, account_id: str) -> list[LlmConnection]:
        return await self._all(
            LlmConnection, "SELECT data FROM llm_connections WHERE account_id = ? ORDER BY created_at, id",
            (account_id,),
        )

    async def change(self, account_id: str, connection_id: str, change: ConnectionChange) -> LlmConnection | None:
        fields = change.fields()
        if not fields:
            return await self.get(account_id, connection_id)
        expression, params = json_set_fields(fields)
        name = fields.get("name")
        sql = (f"UPDATE llm_connections SET data = {expression}, name = coalesce(?, name)"
               " WHERE id = ? AND account_id = ? RETURNING data")

        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(sql, (*params, name, connection_id, account_id)).fetchone()
            return None if row is None else str(row[0])

        stored = await self._run(work)
        return None if stored is None else LlmConnection.model_validate_json(stored)

    async def delete(self, account_id: str, connection_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            gone = conn.execute(
                "DELETE FROM llm_connections WHERE id = ? AND account_id = ?", (connection_id, account_id)
            ).rowcount
            if gone:
                conn.execute("DELETE FROM llm_connection_stats WHERE connection_id = ?", (connection_id,))
            return gone > 0

        return await self._run(work)

    async def add_stats(self, deltas: Mapping[tuple[str, str], ConnectionStats]) -> None:
        rows = [
            (connection_id, account_id, *(getattr(delta, name) for name in STAT_FIELDS))
            for (account_id, connection_id), delta in deltas.items()
        ]
        if rows:
            await self._run(lambda conn: conn.executemany(_ADD_STATS, rows))

    async def stats(self, account_id: str) -> dict[str, ConnectionStats]:
        rows = await self._rows(
            f"SELECT connection_id, {', '.join(STAT_FIELDS)} FROM llm_connection_stats WHERE account_id = ?",
            (account_id,),
        )
        return {row[0]: ConnectionStats(**dict(zip(STAT_FIELDS, row[1:], strict=True))) for row in rows}


@reachable_methods
class SqlitePolicies(_Repo, PolicyRepository):
    async def create(self, policy: Policy) -> None:
        await self._write("INSERT INTO policies (id, account_id, created_at, data) VALUES (?, ?, ?, ?)",
                          (policy.id, policy.account_id, policy.created_at.isoformat(), _dump(policy)))

    async def get(self, account_id: str, policy_id: str) -> Policy | None:
        return await self._one(Policy, "SELECT data FROM policies WHERE id = ? AND account_id = ?",
                               (policy_id, account_id))

    async def list_for_account(self, account_id: str) -> list[Policy]:
        return await self._all(Policy, "SELECT data FROM policies WHERE account_id = ? ORDER BY created_at, id",
                               (account_id,))

    async def change(self, account_id: str, policy_id: str, change: PolicyChange) -> Policy | None:
        fields = change.fields()
        if not fields:
            return await self.get(account_id, policy_id)
        expression, params = json_set_fields(fields)
        sql = f"UPDATE policies SET data = {expression} WHERE id = ? AND account_id = ? RETURNING data"
        row = await self._run(lambda conn: conn.execute(sql, (*params, policy_id, account_id)).fetchone())
        return None if row is None else Policy.model_validate_json(row[0])

    async def delete(self, account_id: str, policy_id: str) -> bool:
        return await self._write("DELETE FROM policies WHERE id = ? AND account_id = ?", (policy_id, account_id)) > 0

    async def add_violations(self, violations: Sequence[Violation]) -> None:
        rows = [(v.id, v.account_id, v.policy_id, v.timestamp.timestamp(), v.severity.value, int(v.block),
                 int(v.alert), _dump(v)) for v in violations]
        if rows:
            await self._run(lambda conn: conn.executemany(
                "INSERT INTO policy_violations (id, account_id, policy_id, ts, severity, block, alert, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows))

    async def violations(self, account_id: str, query: ViolationQuery) -> tuple[list[Violation], int]:
        clauses, params = ["account_id = ?"], [account_id]
        conditions: list[tuple[bool, str, Any]] = [
            (query.policy_id is not None, "policy_id = ?", query.policy_id),
            (query.since is not None, "ts >= ?", query.since and query.since.timestamp()),
            (query.until is not None, "ts <= ?", query.until and query.until.timestamp()),
            (query.block is not None, "block = ?", int(bool(query.block))),
            (query.alerts_only, "alert = ?", 1),
        ]
        for wanted, clause, value in conditions:
            if wanted:
                clauses.append(clause)
                params.append(value)
        if query.severity is not None:
            clauses.append(f"severity IN ({', '.join('?' for _ in query.severity)})")
            params.extend(sorted(level.value for level in query.severity))
        where = " AND ".join(clauses)
        total = (await self._rows(f"SELECT count(*) FROM policy_violations WHERE {where}", params))[0][0]
        found = await self._all(
            Violation, f"SELECT data FROM policy_violations WHERE {where} ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?",
            [*params, query.take, query.skip])
        return found, int(total)
