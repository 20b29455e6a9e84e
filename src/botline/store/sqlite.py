"""SQLite backend (the embedded default): aiosqlite, WAL, versioned migrations at start."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from pydantic import BaseModel

from botline.domain.accounts import Account, ApiKey
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Message, Session
from botline.domain.gateways import Gateway
from botline.domain.inbound import ChatKey, InboundRecord
from botline.domain.memory import Memory, MemoryFormat
from botline.domain.schedules import ScheduledItem
from botline.domain.usage import ModelUsage, UsageRecord, UsageTotals
from botline.store.base import (
    AccountRepository,
    ApiKeyRepository,
    ChatClientRepository,
    ConflictError,
    CounterRepository,
    GatewayRepository,
    InboundRepository,
    LockRepository,
    MemoryRepository,
    MessageRepository,
    ScheduleRepository,
    SessionRepository,
    Store,
    StoreUnavailable,
    UsageRepository,
)
from botline.store.hours import hour_bucket

ModelT = TypeVar("ModelT", bound=BaseModel)


def _dump(model: BaseModel) -> str:
    return model.model_dump_json(by_alias=True)


def _load_all(model_type: type[ModelT], rows: Iterable[sqlite3.Row]) -> list[ModelT]:
    return [model_type.model_validate_json(row[0]) for row in rows]


class _Repo:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc
        await self._db.commit()
        return cursor.rowcount

    async def _one(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> ModelT | None:
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return None if row is None else model_type.model_validate_json(row[0])

    async def _all(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> list[ModelT]:
        async with self._db.execute(sql, params) as cursor:
            return _load_all(model_type, await cursor.fetchall())


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

    async def list(self) -> list[Account]:
        return await self._all(Account, "SELECT data FROM accounts ORDER BY created_at, id", ())


class SqliteApiKeys(_Repo, ApiKeyRepository):
    async def create(self, key: ApiKey) -> None:
        await self._write(
            "INSERT INTO api_keys (id, account_id, key_hash, created_at, data) VALUES (?, ?, ?, ?, ?)",
            (key.id, key.account_id, key.key_hash, key.created_at.isoformat(), _dump(key)),
        )

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
        async with self._db.execute("SELECT count(*) FROM api_keys") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


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


class SqliteChatClients(_Repo, ChatClientRepository):
    async def create(self, client: ChatClient) -> None:
        await self._write(
            "INSERT INTO chat_clients (id, account_id, created_at, data) VALUES (?, ?, ?, ?)",
            (client.id, client.account_id, client.created_at.isoformat(), _dump(client)),
        )

    async def get(self, account_id: str, client_id: str) -> ChatClient | None:
        return await self._one(
            ChatClient, "SELECT data FROM chat_clients WHERE id = ? AND account_id = ?", (client_id, account_id)
        )

    async def find(self, client_id: str) -> ChatClient | None:
        return await self._one(ChatClient, "SELECT data FROM chat_clients WHERE id = ?", (client_id,))

    async def list_for_account(self, account_id: str) -> list[ChatClient]:
        return await self._all(
            ChatClient, "SELECT data FROM chat_clients WHERE account_id = ? ORDER BY created_at, id", (account_id,)
        )

    async def update(self, client: ChatClient) -> None:
        await self._write(
            "UPDATE chat_clients SET data = ? WHERE id = ? AND account_id = ?",
            (_dump(client), client.id, client.account_id),
        )

    async def delete(self, account_id: str, client_id: str) -> bool:
        return (
            await self._write("DELETE FROM chat_clients WHERE id = ? AND account_id = ?", (client_id, account_id))
            > 0
        )


class SqliteSessions(_Repo, SessionRepository):
    async def create(self, session: Session) -> None:
        await self._write(
            "INSERT INTO sessions (id, account_id, chat_client_id, access_key, tag, expires_ts, created_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session.id,
                session.account_id,
                session.chat_client_id,
                session.access_key,
                session.tag,
                session.expires_at.timestamp(),
                session.created_at.isoformat(),
                _dump(session),
            ),
        )

    async def get(self, account_id: str, session_id: str) -> Session | None:
        return await self._one(
            Session, "SELECT data FROM sessions WHERE id = ? AND account_id = ?", (session_id, account_id)
        )

    async def get_by_access_key(self, access_key: str) -> Session | None:
        return await self._one(Session, "SELECT data FROM sessions WHERE access_key = ?", (access_key,))

    async def get_by_tag(self, account_id: str, chat_client_id: str, tag: str) -> Session | None:
        return await self._one(
            Session,
            "SELECT data FROM sessions WHERE account_id = ? AND chat_client_id = ? AND tag = ?"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            (account_id, chat_client_id, tag),
        )

    async def update(self, session: Session) -> None:
        await self._write(
            "UPDATE sessions SET chat_client_id = ?, access_key = ?, tag = ?, expires_ts = ?, data = ?"
            " WHERE id = ? AND account_id = ?",
            (session.chat_client_id, session.access_key, session.tag, session.expires_at.timestamp(), _dump(session),
             session.id, session.account_id),
        )

    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[Session]:
        return await self._all(
            Session,
            "SELECT data FROM sessions WHERE account_id = ? AND chat_client_id = ? ORDER BY created_at, id",
            (account_id, chat_client_id),
        )

    async def _delete_where(self, where: str, params: Sequence[Any]) -> int:
        """Deletes matching sessions and their messages in one transaction; counts each session once
        even when several callers race (only the DELETE that removed a row reports it)."""
        async with self._db.execute(f"DELETE FROM sessions WHERE {where} RETURNING id", params) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        if ids:
            await self._db.execute(f"DELETE FROM messages WHERE session_id IN ({','.join('?' * len(ids))})", ids)
        await self._db.commit()
        return len(ids)

    async def delete(self, account_id: str, session_id: str) -> bool:
        return await self._delete_where("id = ? AND account_id = ?", (session_id, account_id)) > 0

    async def delete_for_client(self, account_id: str, chat_client_id: str) -> int:
        return await self._delete_where("account_id = ? AND chat_client_id = ?", (account_id, chat_client_id))

    async def delete_expired(self, now: datetime, *, limit: int = 500) -> int:
        return await self._delete_where(
            "id IN (SELECT id FROM sessions WHERE expires_ts <= ? LIMIT ?)", (now.timestamp(), limit)
        )


class SqliteMessages(_Repo, MessageRepository):
    async def append(self, message: Message) -> None:
        await self._write(
            "INSERT INTO messages (id, session_id, data) VALUES (?, ?, ?)",
            (message.id, message.session_id, _dump(message)),
        )

    async def update(self, message: Message) -> None:
        await self._write("UPDATE messages SET data = ? WHERE id = ?", (_dump(message), message.id))

    async def list(self, session_id: str) -> list[Message]:
        return await self._all(
            Message, "SELECT data FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
        )

    async def delete_after(self, session_id: str, message_id: str) -> int:
        return await self._write(
            "DELETE FROM messages WHERE session_id = ?"
            " AND seq > (SELECT seq FROM messages WHERE id = ? AND session_id = ?)",
            (session_id, message_id, session_id),
        )

    async def clear(self, session_id: str) -> int:
        return await self._write("DELETE FROM messages WHERE session_id = ?", (session_id,))


class SqliteUsage(_Repo, UsageRepository):
    async def record(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        await self._db.executemany(
            "INSERT INTO usage_hourly (account_id, gateway_id, model, hour, requests, errors,"
            " input_tokens, output_tokens) VALUES (?, ?, ?, ?, 1, ?, ?, ?)"
            " ON CONFLICT (account_id, gateway_id, model, hour) DO UPDATE SET"
            " requests = requests + 1, errors = errors + excluded.errors,"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens",
            [
                (r.account_id, r.gateway_id, r.model, hour_bucket(r.at), int(r.error), r.input_tokens, r.output_tokens)
                for r in records
            ],
        )
        await self._db.commit()

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
        sql = (
            "SELECT coalesce(sum(requests), 0), coalesce(sum(errors), 0), coalesce(sum(input_tokens), 0),"
            f" coalesce(sum(output_tokens), 0) FROM usage_hourly WHERE {where}"
        )
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return UsageTotals(requests=row[0], errors=row[1], input_tokens=row[2], output_tokens=row[3])

    async def by_model(self, account_id: str, *, since: datetime | None = None) -> list[ModelUsage]:
        where, params = self._filter(account_id, None, since)
        sql = (
            "SELECT model, sum(requests), sum(errors), sum(input_tokens), sum(output_tokens)"
            f" FROM usage_hourly WHERE {where} GROUP BY model ORDER BY model"
        )
        async with self._db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [
            ModelUsage(model=r[0], requests=r[1], errors=r[2], input_tokens=r[3], output_tokens=r[4]) for r in rows
        ]


class SqliteCounters(_Repo, CounterRepository):
    async def increment(self, key: str, *, ttl_seconds: int) -> int:
        now = time.time()
        await self._db.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
        async with self._db.execute(
            "INSERT INTO counters (key, value, expires_at) VALUES (?, 1, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
            (key, now + ttl_seconds),
        ) as cursor:
            row = await cursor.fetchone()
        await self._db.commit()
        assert row is not None
        return int(row[0])


class SqliteInbound(_Repo, InboundRepository):
    async def record(self, record: InboundRecord, *, dedupe_seconds: int) -> bool:
        now = time.time()
        await self._db.execute(
            "DELETE FROM inbound WHERE dedupe_key = ? AND pending = 0 AND expires_ts <= ?", (record.dedupe_key, now)
        )
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO inbound (id, dedupe_key, chat_key, expires_ts, data) VALUES (?, ?, ?, ?, ?)",
            (record.id, record.dedupe_key, record.chat.text(), now + dedupe_seconds, _dump(record)),
        )
        await self._db.commit()
        return cursor.rowcount == 1

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


class SqliteLocks(_Repo, LockRepository):
    """Leases in the database file, so even processes sharing one SQLite file respect them."""

    async def acquire(self, name: str, *, ttl_seconds: float) -> str | None:
        token, now = secrets.token_hex(16), time.time()
        await self._db.execute(
            "INSERT INTO locks (name, token, expires_ts) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET token = excluded.token, expires_ts = excluded.expires_ts WHERE locks.expires_ts <= ?",
            (name, token, now + ttl_seconds, now),
        )
        await self._db.commit()
        async with self._db.execute("SELECT token FROM locks WHERE name = ?", (name,)) as cursor:
            row = await cursor.fetchone()
        return token if row is not None and row[0] == token else None

    async def refresh(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        now = time.time()
        return await self._write(
            "UPDATE locks SET expires_ts = ? WHERE name = ? AND token = ? AND expires_ts > ?",
            (now + ttl_seconds, name, token, now),
        ) == 1

    async def release(self, name: str, token: str) -> None:
        await self._write("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))


class SqliteSchedules(_Repo, ScheduleRepository):
    async def create(self, item: ScheduledItem) -> None:
        await self._write(
            "INSERT INTO schedules (id, account_id, chat_client_id, active, created_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (item.id, item.account_id, item.chat_client_id, int(item.active), item.created_at.isoformat(), _dump(item)),
        )

    async def get(self, account_id: str, item_id: str) -> ScheduledItem | None:
        return await self._one(
            ScheduledItem, "SELECT data FROM schedules WHERE id = ? AND account_id = ?", (item_id, account_id)
        )

    async def update(self, item: ScheduledItem) -> None:
        await self._write(
            "UPDATE schedules SET active = ?, data = ? WHERE id = ? AND account_id = ?",
            (int(item.active), _dump(item), item.id, item.account_id),
        )

    async def delete(self, account_id: str, item_id: str) -> bool:
        return await self._write("DELETE FROM schedules WHERE id = ? AND account_id = ?", (item_id, account_id)) > 0

    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[ScheduledItem]:
        return await self._all(
            ScheduledItem,
            "SELECT data FROM schedules WHERE account_id = ? AND chat_client_id = ? ORDER BY created_at, id",
            (account_id, chat_client_id),
        )

    async def active(self) -> list[ScheduledItem]:
        return await self._all(ScheduledItem, "SELECT data FROM schedules WHERE active = 1 ORDER BY created_at", ())

    async def claim(self, item_id: str, fire_time: datetime) -> bool:
        return await self._write(
            "INSERT OR IGNORE INTO schedule_claims (item_id, fire_ts) VALUES (?, ?)", (item_id, fire_time.timestamp())
        ) == 1


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
        async with self._db.execute(f"DELETE FROM memories WHERE {where} RETURNING expires_ts", params) as cursor:
            rows = await cursor.fetchall()
        await self._db.commit()
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
        self.chat_clients = SqliteChatClients(db)
        self.sessions = SqliteSessions(db)
        self.messages = SqliteMessages(db)
        self.usage = SqliteUsage(db)
        self.counters = SqliteCounters(db)
        self.inbound = SqliteInbound(db)
        self.locks = SqliteLocks(db)
        self.memories = SqliteMemories(db)
        self.schedules = SqliteSchedules(db)
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
            await cls._migrate(db)
            # One process owns an SQLite file, so leases left by a crashed run are stale: without this,
            # resumed conversations would wait for them to expire.
            await db.execute("DELETE FROM locks")
            await db.commit()
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
            await self._db.close()
