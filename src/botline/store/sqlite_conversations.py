"""SQLite repositories of conversations: chat clients, sessions, messages."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite
import orjson

from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Message, Session
from botline.domain.handoff import Handoff
from botline.domain.integrations import Integration, IntegrationType
from botline.store.base import (
    ChatClientRepository,
    HeldLease,
    LeasedHistory,
    LockRepository,
    MessageRepository,
    PromptWrite,
    SessionChange,
    SessionRepository,
)
from botline.store.changes import ClientSettings, SessionContext, integration_path
from botline.store.documents import wire_time
from botline.store.sqlite_base import _dump, _load_all, _Repo, json_set_fields, reachable_methods

MESSAGES_OF_SESSION = "SELECT data FROM messages WHERE session_id = ? ORDER BY seq"
APPLY_SESSION_CHANGE = (
    "UPDATE sessions SET data = json_set(data,"
    " '$.messageCount', json_extract(data, '$.messageCount') + ?,"
    " '$.tokenCount', json_extract(data, '$.tokenCount') + ?,"
    " '$.lastMessageAt', coalesce(?, json_extract(data, '$.lastMessageAt')),"
    " '$.lastUserMessageAt', coalesce(?, json_extract(data, '$.lastUserMessageAt')),"
    " '$.expiresAt', CASE WHEN expires_ts < ? THEN ? ELSE json_extract(data, '$.expiresAt') END),"
    " expires_ts = max(expires_ts, coalesce(?, expires_ts))"
    " WHERE id = ? AND account_id = ?"
)
"""SessionChange applied in place (every SET expression sees the row as it was): the counts added,
the times set when given, the expiry raised to the renewal floor (seconds, JSON text) when given."""
RENEW_SESSION = (
    "UPDATE sessions SET data = json_set({document},"
    " '$.expiresAt', CASE WHEN ? AND expires_ts >= ? THEN json_extract(data, '$.expiresAt') ELSE ? END),"
    " expires_ts = CASE WHEN ? THEN max(expires_ts, ?) ELSE ? END"
    " WHERE id = ? AND account_id = ? RETURNING data"
)
"""A renewal in place: the expiry set (or, extending only, raised), the context set when given;
the counters stay as stored."""
LATER = "FROM messages WHERE session_id = ? AND seq > (SELECT seq FROM messages WHERE id = ? AND session_id = ?)"
"""The messages appended after one (a retry drops them, with their files)."""
RECOUNT_SESSION = (
    "UPDATE sessions SET data = json_set(data, '$.messageCount',"
    " CASE WHEN ? IS NULL THEN 0 ELSE max(json_extract(data, '$.messageCount') + ?, 0) END)"
    " WHERE id = ? AND account_id = ?"
)


@reachable_methods
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

    async def edit(self, account_id: str, client_id: str, settings: ClientSettings) -> bool:
        return await self._set_fields(account_id, client_id, settings.fields())

    async def set_integration(
        self, account_id: str, client_id: str, kind: IntegrationType, integration: Integration | None
    ) -> bool:
        value = None if integration is None else orjson.loads(_dump(integration))
        return await self._set_fields(account_id, client_id, {".".join(integration_path(kind)): value})

    async def _set_fields(self, account_id: str, client_id: str, fields: dict[str, object]) -> bool:
        expression, params = json_set_fields(fields)
        sql = f"UPDATE chat_clients SET data = {expression} WHERE id = ? AND account_id = ?"
        return await self._write(sql, (*params, client_id, account_id)) > 0

    async def delete(self, account_id: str, client_id: str) -> bool:
        return (
            await self._write("DELETE FROM chat_clients WHERE id = ? AND account_id = ?", (client_id, account_id))
            > 0
        )


def _read_with_messages(
    conn: sqlite3.Connection, account_id: str, session_id: str
) -> tuple[str, list[sqlite3.Row]] | None:
    """The session's document and its messages' rows (None when gone or another account's)."""
    found = conn.execute(
        "SELECT data FROM sessions WHERE id = ? AND account_id = ?", (session_id, account_id)).fetchone()
    if found is None:
        return None
    return found[0], conn.execute(MESSAGES_OF_SESSION, (session_id,)).fetchall()


def _append(
    conn: sqlite3.Connection, account_id: str, session_id: str, rows: Sequence[tuple[str, str, str]],
    change: SessionChange,
) -> bool:
    """Within a transaction: `change` applied to the session and the message rows inserted; False, with
    nothing written, when the session is gone or another account's."""
    floor = change.expires_at_least
    renewal = (None, None) if floor is None else (floor.timestamp(), wire_time(floor))
    params = (change.messages, change.tokens, wire_time(change.last_message_at),
              wire_time(change.last_user_message_at), renewal[0], renewal[1], renewal[0], session_id, account_id)
    if conn.execute(APPLY_SESSION_CHANGE, params).rowcount == 0:
        return False
    conn.executemany("INSERT INTO messages (id, session_id, data) VALUES (?, ?, ?)", rows)
    return True


SESSION_FOR_PROMPT = (
    "SELECT data, expires_ts, json_extract(data, '$.handoff.state'), json_extract(data, '$.messageCount')"
    " FROM sessions WHERE id = ? AND account_id = ?"
)
"""The session's document with what PromptWrite.fits_stored needs of it, read in SQL so the connection's
thread validates no model in Python (it would hold the GIL the event loop wants)."""


def _read_and_prompt(
    conn: sqlite3.Connection, account_id: str, session_id: str, prompt: PromptWrite, row: tuple[str, str, str]
) -> tuple[tuple[str, list[sqlite3.Row]] | None, bool]:
    """lease_with_messages' transaction with a prompt (`row`: its message's, made before): the read, then the
    write when it fits."""
    found = conn.execute(SESSION_FOR_PROMPT, (session_id, account_id)).fetchone()
    if found is None:
        return None, False
    document, expires_ts, handoff_state, count = found
    messages = conn.execute(MESSAGES_OF_SESSION, (session_id,)).fetchall()
    last_role = orjson.loads(messages[-1][0])["role"] if messages else None
    written = prompt.fits_stored(expires_ts, handoff_state, last_role, count) and _append(
        conn, account_id, session_id, [row], prompt.change)
    return (document, messages), written


@reachable_methods
class SqliteSessions(_Repo, SessionRepository):
    def __init__(self, db: aiosqlite.Connection, locks: LockRepository) -> None:
        """`locks`: the store's leases, which `lease_with_messages` takes and `add_messages` may free."""
        super().__init__(db)
        self._locks = locks

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

    async def get_with_messages(self, account_id: str, session_id: str) -> tuple[Session, list[Message]] | None:
        return await self._with_messages(account_id, session_id)

    async def _with_messages(self, account_id: str, session_id: str) -> tuple[Session, list[Message]] | None:
        read = await self._run(lambda conn: _read_with_messages(conn, account_id, session_id))
        return None if read is None else (Session.model_validate_json(read[0]), _load_all(Message, read[1]))

    async def lease_with_messages(
        self, account_id: str, session_id: str, lease: str, *, ttl_seconds: float, prompt: PromptWrite | None = None,
    ) -> LeasedHistory | None:
        """The lease is kept in this process (ProcessLocks: taking it costs no hop), then the read and
        the prompt's write in one transaction; a call that fails or is cancelled gives the lease back at
        once (releasing never suspends)."""
        token = await self._locks.acquire(lease, ttl_seconds=ttl_seconds)
        if token is None:
            return None
        try:
            if prompt is None:
                return LeasedHistory(token, await self._with_messages(account_id, session_id))
            row = (prompt.message.id, session_id, _dump(prompt.message))
            read, written = await self._run(lambda conn: _read_and_prompt(conn, account_id, session_id, prompt, row))
            found = None if read is None else (Session.model_validate_json(read[0]), _load_all(Message, read[1]))
            return LeasedHistory(token, found, written)
        except BaseException:
            await self._locks.release(lease, token)
            raise

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

    async def renew(
        self, account_id: str, session_id: str, *, expires_at: datetime, extend_only: bool = False,
        context: SessionContext | None = None,
    ) -> Session | None:
        fields: dict[str, object] = {} if context is None else {
            "extraContext": context.extra_context, "contextLocation": context.context_location,
            "metadata": context.metadata}
        document, context_params = json_set_fields(fields)
        seconds = expires_at.timestamp()
        params = (*context_params, extend_only, seconds, wire_time(expires_at), extend_only, seconds, seconds,
                  session_id, account_id)
        sql = RENEW_SESSION.format(document=document)
        row = await self._run(lambda conn: conn.execute(sql, params).fetchone())
        return None if row is None else Session.model_validate_json(row[0])

    async def set_handoff(self, account_id: str, session_id: str, handoff: Handoff | None) -> Session | None:
        document, params = json_set_fields({"handoff": None if handoff is None else handoff.wire()})
        sql = f"UPDATE sessions SET data = {document} WHERE id = ? AND account_id = ? RETURNING data"
        row = await self._run(lambda conn: conn.execute(sql, (*params, session_id, account_id)).fetchone())
        return None if row is None else Session.model_validate_json(row[0])

    async def record_delivery_error(self, account_id: str, session_id: str, error: str | None) -> None:
        document, params = json_set_fields({"lastDeliveryError": error})
        await self._write(f"UPDATE sessions SET data = {document} WHERE id = ? AND account_id = ?",
                          (*params, session_id, account_id))

    async def recount(self, account_id: str, session_id: str, delta: int | None) -> None:
        await self._write(RECOUNT_SESSION, (delta, delta, session_id, account_id))

    async def add_messages(
        self, account_id: str, session_id: str, messages: Sequence[Message], change: SessionChange, *,
        freeing: HeldLease | None = None,
    ) -> bool:
        """A lease to free is freed after the commit (or the failed write): leases of this backend are
        kept in this process (ProcessLocks), so freeing one costs no hop, and nothing runs between."""
        rows = [(m.id, session_id, _dump(m)) for m in messages]
        try:
            return await self._run(lambda conn: _append(conn, account_id, session_id, rows, change))
        finally:
            if freeing is not None:
                await self._locks.release(freeing.name, freeing.token)

    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[Session]:
        return await self._all(
            Session,
            "SELECT data FROM sessions WHERE account_id = ? AND chat_client_id = ? ORDER BY created_at, id",
            (account_id, chat_client_id),
        )

    async def _delete_where(self, where: str, params: Sequence[Any]) -> int:
        """Deletes matching sessions and their messages in one transaction; counts each session once
        even when several callers race (only the DELETE that removed a row reports it)."""
        def work(conn: sqlite3.Connection) -> int:
            ids = [row[0] for row in conn.execute(f"DELETE FROM sessions WHERE {where} RETURNING id", params)]
            if ids:
                marks = ",".join("?" * len(ids))
                conn.execute(f"DELETE FROM messages WHERE session_id IN ({marks})", ids)
                conn.execute(f"DELETE FROM answer_media WHERE session_id IN ({marks})", ids)
            return len(ids)

        return await self._run(work)

    async def delete(self, account_id: str, session_id: str) -> bool:
        return await self._delete_where("id = ? AND account_id = ?", (session_id, account_id)) > 0

    async def delete_for_client(self, account_id: str, chat_client_id: str) -> int:
        return await self._delete_where("account_id = ? AND chat_client_id = ?", (account_id, chat_client_id))

    async def delete_expired(self, now: datetime, *, limit: int = 500) -> int:
        return await self._delete_where(
            "id IN (SELECT id FROM sessions WHERE expires_ts <= ? LIMIT ?)", (now.timestamp(), limit)
        )


@reachable_methods
class SqliteMessages(_Repo, MessageRepository):
    async def append(self, message: Message) -> None:
        await self._write(
            "INSERT INTO messages (id, session_id, data) VALUES (?, ?, ?)",
            (message.id, message.session_id, _dump(message)),
        )

    async def update(self, message: Message) -> None:
        await self._write("UPDATE messages SET data = ? WHERE id = ?", (_dump(message), message.id))

    async def list(self, session_id: str) -> list[Message]:
        return await self._all(Message, MESSAGES_OF_SESSION, (session_id,))

    async def delete_after(self, session_id: str, message_id: str) -> int:
        params = (session_id, message_id, session_id)

        def work(conn: sqlite3.Connection) -> int:
            conn.execute(f"DELETE FROM answer_media WHERE session_id = ? AND message_id IN (SELECT id {LATER})",
                         (session_id, *params))
            return conn.execute(f"DELETE {LATER}", params).rowcount

        return await self._run(work)

    async def clear(self, session_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM answer_media WHERE session_id = ?", (session_id,))
            return conn.execute("DELETE FROM messages WHERE session_id = ?", (session_id,)).rowcount

        return await self._run(work)
