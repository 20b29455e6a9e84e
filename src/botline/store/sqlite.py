"""SQLite backend (the embedded default): aiosqlite, WAL, versioned migrations at start."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from botline.domain.accounts import Account, ApiKey
from botline.domain.gateways import Gateway
from botline.domain.usage import USAGE_COUNTS, ModelUsage, UsageRecord, UsageTotals
from botline.store.base import (
    AccountRepository,
    ApiKeyRepository,
    CounterRepository,
    GatewayRepository,
    Store,
    StoreUnavailable,
    UsageRepository,
)
from botline.store.changes import AccountChange, BalanceOperation
from botline.store.hours import hour_bucket
from botline.store.process_locks import ProcessLocks
from botline.store.signals import LocalSignals
from botline.store.sqlite_base import _dump, _Repo, json_set_fields, reachable_methods
from botline.store.sqlite_batch import SqliteBatchItems, SqliteBatchJobs, SqliteBatchWorkflows
from botline.store.sqlite_channels import SqliteInbound, SqliteSchedules
from botline.store.sqlite_conversations import SqliteChatClients, SqliteMessages, SqliteSessions
from botline.store.sqlite_governance import SqliteLlmConnections, SqlitePolicies
from botline.store.sqlite_knowledge import CONTAINS_FUNCTION, SqliteCollections, SqliteDocuments, contains
from botline.store.sqlite_media import SqliteBlobs, SqliteMedia
from botline.store.sqlite_memories import SqliteMemories
from botline.store.sqlite_skills import SqliteSkills
from botline.store.sqlite_values import SqliteReservations, SqliteServerValues
from botline.store.sqlite_vectors import SqliteVectors


@reachable_methods
class SqliteAccounts(_Repo, AccountRepository):
    async def create(self, account: Account) -> None:
        await self._write(
            "INSERT INTO accounts (id, created_at, data) VALUES (?, ?, ?)",
            (account.id, account.created_at.isoformat(), _dump(account)),
        )

    async def get(self, account_id: str) -> Account | None:
        return await self._one(Account, "SELECT data FROM accounts WHERE id = ?", (account_id,))

    async def update(self, account: Account) -> None:
        await self._write("UPDATE accounts SET data = ? WHERE id = ?", (_dump(account), account.id))

    async def change(self, account_id: str, change: AccountChange) -> Account | None:
        fields = change.fields()
        if not fields:
            return await self.get(account_id)
        expression, params = json_set_fields(fields)
        sql = f"UPDATE accounts SET data = {expression} WHERE id = ? RETURNING data"
        row = await self._run(lambda conn: conn.execute(sql, (*params, account_id)).fetchone())
        return None if row is None else Account.model_validate_json(row[0])

    async def adjust_balance(self, account_id: str, operation: BalanceOperation, amount: float) -> float | None:
        value = {
            BalanceOperation.ADD: "coalesce(json_extract(data, '$.balance'), 0) + ?",
            BalanceOperation.REMOVE: "coalesce(json_extract(data, '$.balance'), 0) - ?",
            BalanceOperation.SET: "?",
        }[operation]
        sql = (f"UPDATE accounts SET data = json_set(data, '$.balance', {value}) WHERE id = ?"
               " RETURNING json_extract(data, '$.balance')")
        row = await self._run(lambda conn: conn.execute(sql, (float(amount), account_id)).fetchone())
        return None if row is None else float(row[0])

    async def list(self) -> list[Account]:
        return await self._all(Account, "SELECT data FROM accounts ORDER BY created_at, id", ())


@reachable_methods
class SqliteApiKeys(_Repo, ApiKeyRepository):
    async def create(self, key: ApiKey) -> None:
        await self._write(
            "INSERT INTO api_keys (id, account_id, key_hash, created_at, data) VALUES (?, ?, ?, ?, ?)",
            (key.id, key.account_id, key.key_hash, key.created_at.isoformat(), _dump(key)),
        )

    async def create_within(self, key: ApiKey, *, limit: int) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            held = conn.execute("SELECT count(*) FROM api_keys WHERE account_id = ?", (key.account_id,)).fetchone()
            if int(held[0]) >= limit:
                return False
            conn.execute(
                "INSERT INTO api_keys (id, account_id, key_hash, created_at, data) VALUES (?, ?, ?, ?, ?)",
                (key.id, key.account_id, key.key_hash, key.created_at.isoformat(), _dump(key)),
            )
            return True

        return await self._run(work)

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        return await self._one(ApiKey, "SELECT data FROM api_keys WHERE key_hash = ?", (key_hash,))

    async def list_for_account(self, account_id: str) -> list[ApiKey]:
        return await self._all(
            ApiKey, "SELECT data FROM api_keys WHERE account_id = ? ORDER BY created_at, id", (account_id,)
        )

    async def delete(self, account_id: str, key_id: str) -> bool:
        return await self._write("DELETE FROM api_keys WHERE id = ? AND account_id = ?", (key_id, account_id)) > 0

    async def touch(self, key_id: str, used_at: datetime) -> None:
        await self._write(
            "UPDATE api_keys SET data = json_set(data, '$.usedAt', ?) WHERE id = ?",
            (used_at.isoformat(), key_id),
        )

    async def count(self) -> int:
        rows = await self._rows("SELECT count(*) FROM api_keys")
        return int(rows[0][0]) if rows else 0


@reachable_methods
class SqliteGateways(_Repo, GatewayRepository):
    async def create(self, gateway: Gateway) -> None:
        await self._write(
            "INSERT INTO gateways (id, account_id, slug, created_at, data) VALUES (?, ?, ?, ?, ?)",
            (gateway.id, gateway.account_id, gateway.slug, gateway.created_at.isoformat(), _dump(gateway)),
        )

    async def get(self, account_id: str, gateway_id: str) -> Gateway | None:
        return await self._one(
            Gateway, "SELECT data FROM gateways WHERE id = ? AND account_id = ?", (gateway_id, account_id)
        )

    async def get_by_slug(self, account_id: str, slug: str) -> Gateway | None:
        return await self._one(
            Gateway, "SELECT data FROM gateways WHERE slug = ? AND account_id = ?", (slug, account_id)
        )

    async def list_for_account(self, account_id: str) -> list[Gateway]:
        return await self._all(
            Gateway, "SELECT data FROM gateways WHERE account_id = ? ORDER BY created_at, id", (account_id,)
        )

    async def update(self, gateway: Gateway) -> None:
        await self._write(
            "UPDATE gateways SET slug = ?, data = ? WHERE id = ? AND account_id = ?",
            (gateway.slug, _dump(gateway), gateway.id, gateway.account_id),
        )

    async def delete(self, account_id: str, gateway_id: str) -> bool:
        return (
            await self._write("DELETE FROM gateways WHERE id = ? AND account_id = ?", (gateway_id, account_id)) > 0
        )


@reachable_methods
class SqliteUsage(_Repo, UsageRepository):
    async def record(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        sql = (
            "INSERT INTO usage_hourly (account_id, gateway_id, model, hour, requests, errors,"
            " input_tokens, output_tokens, policy_requests, policy_input_tokens, policy_output_tokens)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (account_id, gateway_id, model, hour) DO UPDATE SET"
            " requests = requests + excluded.requests, errors = errors + excluded.errors,"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens,"
            " policy_requests = policy_requests + excluded.policy_requests,"
            " policy_input_tokens = policy_input_tokens + excluded.policy_input_tokens,"
            " policy_output_tokens = policy_output_tokens + excluded.policy_output_tokens"
        )
        rows = [(r.account_id, r.gateway_id, r.model, hour_bucket(r.at), *r.counts()) for r in records]
        await self._run(lambda conn: conn.executemany(sql, rows))

    @staticmethod
    def _filter(account_id: str, gateway_id: str | None, since: datetime | None) -> tuple[str, list[Any]]:
        clauses, params = ["account_id = ?"], [account_id]
        if gateway_id is not None:
            clauses.append("gateway_id = ?")
            params.append(gateway_id)
        if since is not None:
            clauses.append("hour >= ?")
            params.append(hour_bucket(since))
        return " AND ".join(clauses), params

    async def totals(
        self, account_id: str, *, gateway_id: str | None = None, since: datetime | None = None
    ) -> UsageTotals:
        where, params = self._filter(account_id, gateway_id, since)
        sums = ", ".join(f"coalesce(sum({column}), 0)" for column in USAGE_COUNTS)
        row = (await self._rows(f"SELECT {sums} FROM usage_hourly WHERE {where}", params))[0]
        return UsageTotals(**dict(zip(USAGE_COUNTS, row, strict=True)))

    async def by_model(self, account_id: str, *, since: datetime | None = None) -> list[ModelUsage]:
        where, params = self._filter(account_id, None, since)
        sums = ", ".join(f"sum({column})" for column in USAGE_COUNTS)
        rows = await self._rows(f"SELECT model, {sums} FROM usage_hourly WHERE {where} GROUP BY model ORDER BY model",
                                params)
        return [ModelUsage(model=r[0], **dict(zip(USAGE_COUNTS, r[1:], strict=True))) for r in rows]


@reachable_methods
class SqliteCounters(_Repo, CounterRepository):
    async def increment(self, key: str, *, ttl_seconds: int) -> int:
        now = time.time()

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
            row = conn.execute(
                "INSERT INTO counters (key, value, expires_at) VALUES (?, 1, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                (key, now + ttl_seconds),
            ).fetchone()
            return int(row[0])

        return await self._run(work)

    async def add(self, key: str, amount: int, *, ttl_seconds: int) -> int:
        now = time.time()

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM counters WHERE key = ? AND expires_at <= ?", (key, now))
            row = conn.execute(
                "INSERT INTO counters (key, value, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value",
                (key, amount, now + ttl_seconds),
            ).fetchone()
            return int(row[0])

        return await self._run(work)

    async def values(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        marks = ", ".join("?" * len(keys))
        rows = await self._rows(f"SELECT key, value FROM counters WHERE key IN ({marks}) AND expires_at > ?",
                                [*keys, time.time()])
        found = {row[0]: int(row[1]) for row in rows}
        return [found.get(key, 0) for key in keys]




def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("botline.store") / "migrations"
    scripts = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(int(p.name.split("_", 1)[0]), p.read_text()) for p in scripts]


class SqliteStore(Store):
    """One aiosqlite connection (its own thread) in WAL mode."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self.accounts = SqliteAccounts(db)
        self.api_keys = SqliteApiKeys(db)
        self.gateways = SqliteGateways(db)
        self.llm_connections = SqliteLlmConnections(db)
        self.policies = SqlitePolicies(db)
        self.chat_clients = SqliteChatClients(db)
        self.locks = ProcessLocks()
        self.sessions = SqliteSessions(db, self.locks)
        self.messages = SqliteMessages(db)
        self.usage = SqliteUsage(db)
        self.counters = SqliteCounters(db)
        self.inbound = SqliteInbound(db)
        self.server_values = SqliteServerValues(db)
        self.reservations = SqliteReservations(db)
        self.memories = SqliteMemories(db)
        self.schedules = SqliteSchedules(db)
        self.batch_workflows = SqliteBatchWorkflows(db)
        self.batch_jobs = SqliteBatchJobs(db)
        self.batch_items = SqliteBatchItems(db)
        self.collections = SqliteCollections(db)
        self.documents = SqliteDocuments(db)
        self.skills = SqliteSkills(db)
        self.media = SqliteMedia(db)
        self.blobs = SqliteBlobs(db)
        self.vectors = SqliteVectors(db)
        self.signals = LocalSignals()  # one process per SQLite file (decision 12)
        self._closed = False

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        """Opens (creating folders as needed) and migrates the database at `path`."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.create_function(CONTAINS_FUNCTION, 2, contains, deterministic=True)
            await cls._migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    @staticmethod
    async def _migrate(db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for version, script in _migrations():
            if version > current:
                await db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")

    async def ping(self) -> None:
        try:
            await self._db.execute("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:
            raise StoreUnavailable(f"SQLite is not usable: {exc}") from exc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.signals.close()
            await self._db.close()
