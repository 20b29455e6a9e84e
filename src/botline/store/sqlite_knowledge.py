"""SQLite repositories of knowledge collections and documents, with the lexical log (store/lexical_index.py).

A document's encoded terms are its `kb_lexical` row, written by the indexer; a text change, a delete or
a failure turns the row into a tombstone, and clearing or deleting the collection removes its rows and
records a reset, in the same transaction as the documents' change. Searches run in memory
(EmbeddedLexical), from the rows past what this process has read.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from botline.domain.knowledge import (
    BrowseQuery,
    Collection,
    CollectionState,
    DocumentWrite,
    IndexedText,
    IndexState,
    KnowledgeDocument,
    LabelChanges,
    LexicalHit,
    WriteOutcome,
    plan_upsert,
)
from botline.store.documents import load_many, wire_time
from botline.store.knowledge import CollectionRepository, DocumentRepository
from botline.store.lexical_index import PAGE, EmbeddedLexical, LogEntry, LogPage
from botline.store.sqlite_base import _dump, _Repo, json_set_fields, reachable_methods

CHUNK = 500
"""Parameters per IN (...) list (SQLite allows 32,766; this keeps statements short)."""
CONTAINS_FUNCTION = "kb_contains"
NEVER = -1e300
"""indexed_ts of a document never indexed, in ORDER BY (sorts first ascending, like domain.knowledge)."""
ORDER_COLUMNS = {"created_at": "created_ts", "updated_at": "updated_ts", "indexed_at": f"coalesce(indexed_ts, {NEVER})"}


def contains(haystack: str | None, needle: str) -> bool:
    """The browse filter's case-insensitive substring test, registered on the connection (DocumentFilter.matches)."""
    return haystack is not None and needle.casefold() in haystack.casefold()


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _marks(items: Sequence[Any]) -> str:
    return ",".join("?" * len(items))


def _columns(document: KnowledgeDocument) -> tuple[Any, ...]:
    return (document.name, document.reference, document.state.value, document.version,
            document.created_at.timestamp(), document.updated_at.timestamp(),
            None if document.indexed_at is None else document.indexed_at.timestamp(), _dump(document))


def _save(conn: sqlite3.Connection, document: KnowledgeDocument) -> None:
    conn.execute(
        "UPDATE kb_documents SET name = ?, reference = ?, state = ?, version = ?, created_ts = ?, updated_ts = ?,"
        " indexed_ts = ?, data = ? WHERE id = ?", (*_columns(document), document.id),
    )


def _advance(conn: sqlite3.Connection, collection_id: str, rows: int, *, reset: bool = False) -> int:
    """Moves the collection's lexical counter on by `rows` (one number per log row written) and returns it."""
    value: int = conn.execute(
        "INSERT INTO kb_lexical_state (collection_id, seq, reset) VALUES (?, ?, CASE WHEN ? THEN ? ELSE 0 END)"
        " ON CONFLICT (collection_id) DO UPDATE SET seq = seq + excluded.seq,"
        " reset = CASE WHEN ? THEN seq + excluded.seq ELSE reset END RETURNING seq",
        (collection_id, rows, reset, rows, reset)).fetchone()[0]
    return value


def _log(conn: sqlite3.Connection, collection_id: str, rows: Sequence[tuple[str, bytes | None]]) -> None:
    """Writes log rows (document id, encoded terms or None for a tombstone), each with its own number."""
    if not rows:
        return
    last = _advance(conn, collection_id, len(rows))
    first = last - len(rows) + 1
    conn.executemany(
        "INSERT INTO kb_lexical (collection_id, document_id, seq, terms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (collection_id, document_id) DO UPDATE SET seq = excluded.seq, terms = excluded.terms",
        [(collection_id, document_id, first + n, terms) for n, (document_id, terms) in enumerate(rows)])


def _reset(conn: sqlite3.Connection, collection_id: str) -> None:
    """Every document of the collection out of the index at once."""
    conn.execute("DELETE FROM kb_lexical WHERE collection_id = ?", (collection_id,))
    _advance(conn, collection_id, 1, reset=True)


def _unindex(conn: sqlite3.Connection, seqs: Sequence[int]) -> None:
    """Takes the documents' text out of the lexical index (tombstones for those that are in it)."""
    leaving: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(seqs):
        for collection_id, document_id in conn.execute(
            f"SELECT l.collection_id, l.document_id FROM kb_documents d JOIN kb_lexical l"
            f" ON l.collection_id = d.collection_id AND l.document_id = d.id"
            f" WHERE d.seq IN ({_marks(chunk)}) AND l.terms IS NOT NULL", chunk):
            leaving[collection_id].append(document_id)
    for collection_id, document_ids in leaving.items():
        _log(conn, collection_id, [(document_id, None) for document_id in document_ids])


def _enqueue(conn: sqlite3.Connection, seq: int, version: int, now: float) -> None:
    conn.execute(
        "INSERT INTO kb_queue (document_seq, version, queued_ts, available_ts, attempts) VALUES (?, ?, ?, ?, 0)"
        " ON CONFLICT (document_seq) DO UPDATE SET version = excluded.version, queued_ts = excluded.queued_ts,"
        " available_ts = excluded.available_ts, attempts = 0", (seq, version, now, now),
    )


def _remove(conn: sqlite3.Connection, seqs: Sequence[int], *, unindex: bool = True) -> int:
    """Deletes the documents (`unindex` False: the caller resets their collection's index instead)."""
    if unindex:
        _unindex(conn, seqs)
    for chunk in _chunks(seqs):
        conn.execute(f"DELETE FROM kb_queue WHERE document_seq IN ({_marks(chunk)})", chunk)
        conn.execute(f"DELETE FROM kb_documents WHERE seq IN ({_marks(chunk)})", chunk)
    return len(seqs)


@reachable_methods
class SqliteCollections(_Repo, CollectionRepository):
    async def create(self, collection: Collection) -> None:
        await self._write(
            "INSERT INTO kb_collections (id, account_id, created_at, data) VALUES (?, ?, ?, ?)",
            (collection.id, collection.account_id, collection.created_at.isoformat(), _dump(collection)),
        )

    async def get(self, account_id: str, collection_id: str) -> Collection | None:
        return await self._one(Collection, "SELECT data FROM kb_collections WHERE id = ? AND account_id = ?",
                               (collection_id, account_id))

    async def list_for_account(self, account_id: str) -> list[Collection]:
        return await self._all(Collection, "SELECT data FROM kb_collections WHERE account_id = ?"
                               " ORDER BY created_at, id", (account_id,))

    async def edit(
        self, account_id: str, collection_id: str, *, name: str, context: str | None, tags: list[str]
    ) -> bool:
        expression, params = json_set_fields({"name": name, "context": context, "tags": tags})
        return await self._write(f"UPDATE kb_collections SET data = {expression} WHERE id = ? AND account_id = ?",
                                 (*params, collection_id, account_id)) == 1

    async def delete(self, account_id: str, collection_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            seqs = [row[0] for row in conn.execute("SELECT seq FROM kb_documents WHERE collection_id = ?"
                                                    " AND account_id = ?", (collection_id, account_id))]
            _remove(conn, seqs, unindex=False)
            gone = conn.execute("DELETE FROM kb_collections WHERE id = ? AND account_id = ?",
                                (collection_id, account_id)).rowcount == 1
            if gone:
                _reset(conn, collection_id)
            return gone

        return await self._run(work)

    async def state(self, collection_id: str) -> CollectionState:
        rows = await self._rows("SELECT state, count(*) FROM kb_documents WHERE collection_id = ? GROUP BY state",
                                (collection_id,))
        counts = {row[0]: int(row[1]) for row in rows}
        return CollectionState(total=sum(counts.values()), indexed=counts.get(IndexState.INDEXED, 0),
                               queued=counts.get(IndexState.QUEUED, 0), cancelled=counts.get(IndexState.CANCELLED, 0))


@reachable_methods
class SqliteDocuments(_Repo, EmbeddedLexical, DocumentRepository):
    def __init__(self, db: aiosqlite.Connection) -> None:
        _Repo.__init__(self, db)
        EmbeddedLexical.__init__(self)

    async def write(
        self, account_id: str, collection_id: str, writes: Sequence[DocumentWrite], *, now: datetime,
        labels: LabelChanges, sync: bool = False,
    ) -> WriteOutcome | None:
        def work(conn: sqlite3.Connection) -> WriteOutcome | None:
            if conn.execute("SELECT 1 FROM kb_collections WHERE id = ? AND account_id = ?",
                            (collection_id, account_id)).fetchone() is None:
                return None
            stored: dict[str, tuple[int | None, KnowledgeDocument | None]] = {}
            for chunk in _chunks([w.name for w in writes]):
                for row_seq, data in conn.execute(
                    f"SELECT seq, data FROM kb_documents WHERE collection_id = ? AND name IN ({_marks(chunk)})",
                    (collection_id, *chunk),
                ):
                    found = KnowledgeDocument.model_validate_json(data)
                    stored[found.name] = (row_seq, found)
            outcome = WriteOutcome()
            for write in writes:
                seq, old = stored.get(write.name, (None, None))
                plan = plan_upsert(old, write, account_id=account_id, collection_id=collection_id, now=now,
                                   labels=labels)
                document = plan.document
                if document is not None and seq is None:
                    seq = conn.execute(
                        "INSERT INTO kb_documents (id, account_id, collection_id, name, reference, state, version,"
                        " created_ts, updated_ts, indexed_ts, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (document.id, account_id, collection_id, *_columns(document)),
                    ).lastrowid
                elif document is not None:
                    _save(conn, document)
                if plan.reindex and seq is not None and document is not None:
                    if old is not None:
                        _unindex(conn, [seq])
                    _enqueue(conn, seq, document.version, now.timestamp())
                kept = document if document is not None else old
                if kept is not None:
                    outcome.results.append((kept.id, plan.state))
            if sync:
                names = {w.name for w in writes}
                rows = conn.execute("SELECT seq, name FROM kb_documents WHERE collection_id = ?", (collection_id,))
                absent = [seq for seq, name in rows if name not in names]
                outcome.deleted = _remove(conn, absent)
            return outcome

        return await self._run(work)

    async def get(self, account_id: str, collection_id: str, document_id: str) -> KnowledgeDocument | None:
        return await self._one(
            KnowledgeDocument,
            "SELECT data FROM kb_documents WHERE id = ? AND collection_id = ? AND account_id = ?",
            (document_id, collection_id, account_id),
        )

    async def many(self, account_id: str, document_ids: Sequence[str]) -> list[KnowledgeDocument]:
        found: dict[str, KnowledgeDocument] = {}
        for chunk in _chunks(list(document_ids)):
            for document in await self._all(
                KnowledgeDocument, f"SELECT data FROM kb_documents WHERE account_id = ? AND id IN ({_marks(chunk)})",
                (account_id, *chunk),
            ):
                found[document.id] = document
        return [found[i] for i in document_ids if i in found]

    async def browse(self, account_id: str, collection_id: str, query: BrowseQuery) -> list[KnowledgeDocument]:
        where, params = ["account_id = ?", "collection_id = ?"], [account_id, collection_id]
        wanted = query.filter
        conditions: list[tuple[str, Any]] = [
            ("state = ?", None if query.state is None else query.state.value),
            ("EXISTS (SELECT 1 FROM json_each(data, '$.tags') WHERE value = ?)", wanted.tag),
            (f"{CONTAINS_FUNCTION}(name, ?)", wanted.name),
            ("reference = ?", wanted.reference),
            (f"{CONTAINS_FUNCTION}(json_extract(data, '$.contents'), ?)", wanted.content),
            ("id = ?", wanted.document_id),
        ]
        for condition, value in conditions:
            if value is not None:
                where.append(condition)
                params.append(value)
        direction = "DESC" if query.order.descending else "ASC"
        sql = (f"SELECT data FROM kb_documents WHERE {' AND '.join(where)}"
               f" ORDER BY {ORDER_COLUMNS[query.order.field]} {direction}, id {direction} LIMIT ? OFFSET ?")
        return await self._all(KnowledgeDocument, sql, (*params, query.limit, query.offset))

    async def with_reference(self, collection_id: str, reference: str) -> list[KnowledgeDocument]:
        return await self._all(KnowledgeDocument, "SELECT data FROM kb_documents WHERE collection_id = ?"
                               " AND reference = ? ORDER BY created_ts, id", (collection_id, reference))

    async def delete(self, account_id: str, collection_id: str, document_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT seq FROM kb_documents WHERE id = ? AND collection_id = ? AND account_id = ?",
                               (document_id, collection_id, account_id)).fetchone()
            return row is not None and _remove(conn, [row[0]]) == 1

        return await self._run(work)

    async def clear(self, account_id: str, collection_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            rows = conn.execute("SELECT seq FROM kb_documents WHERE collection_id = ? AND account_id = ?",
                                (collection_id, account_id)).fetchall()
            if rows:
                _reset(conn, collection_id)
            return _remove(conn, [row[0] for row in rows], unindex=False)

        return await self._run(work)

    async def requeue(self, account_id: str, collection_id: str, *, now: datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            rows = conn.execute("SELECT seq, data FROM kb_documents WHERE collection_id = ? AND account_id = ?",
                                (collection_id, account_id)).fetchall()
            for seq, data in rows:
                document = KnowledgeDocument.model_validate_json(data)
                _save(conn, document.model_copy(update={"state": IndexState.QUEUED, "index_error": None}))
                _enqueue(conn, seq, document.version, now.timestamp())
            return len(rows)

        return await self._run(work)

    async def claim(self, now: datetime, *, lease_seconds: float, limit: int) -> list[KnowledgeDocument]:
        moment = now.timestamp()

        def work(conn: sqlite3.Connection) -> list[str]:
            seqs = [row[0] for row in conn.execute(
                "SELECT document_seq FROM kb_queue WHERE available_ts <= ? ORDER BY queued_ts, document_seq LIMIT ?",
                (moment, limit))]
            if not seqs:
                return []
            conn.execute(f"UPDATE kb_queue SET available_ts = ?, attempts = attempts + 1"
                         f" WHERE document_seq IN ({_marks(seqs)})", (moment + lease_seconds, *seqs))
            return [row[0] for row in conn.execute(
                f"SELECT data FROM kb_documents WHERE seq IN ({_marks(seqs)}) ORDER BY seq", seqs)]

        return load_many(KnowledgeDocument, await self._run(work))

    @staticmethod
    def _current(conn: sqlite3.Connection, document_id: str, version: int) -> tuple[int, KnowledgeDocument] | None:
        row = conn.execute("SELECT seq, data FROM kb_documents WHERE id = ? AND version = ?",
                           (document_id, version)).fetchone()
        return None if row is None else (row[0], KnowledgeDocument.model_validate_json(row[1]))

    async def complete(self, entries: Sequence[IndexedText], *, now: datetime) -> set[str]:
        """One transaction for the batch; the documents' JSON is changed in place (json_set), not re-read."""
        expression, values = json_set_fields({"state": IndexState.INDEXED.value, "indexedAt": wire_time(now),
                                              "indexError": None})
        encoded = {entry.document_id: (entry.version, entry.row) for entry in entries}

        def work(conn: sqlite3.Connection) -> set[str]:
            current: list[tuple[int, str, str]] = []
            ids = list(encoded)
            for chunk in _chunks(ids):
                for seq, document_id, collection_id, version in conn.execute(
                    f"SELECT seq, id, collection_id, version FROM kb_documents WHERE id IN ({_marks(chunk)})", chunk):
                    if encoded[document_id][0] == version:
                        current.append((seq, document_id, collection_id))
            conn.executemany(f"UPDATE kb_documents SET state = ?, indexed_ts = ?, data = {expression} WHERE seq = ?",
                             [(IndexState.INDEXED.value, now.timestamp(), *values, seq) for seq, _, _ in current])
            conn.executemany("DELETE FROM kb_queue WHERE document_seq = ? AND version = ?",
                             [(seq, encoded[document_id][0]) for seq, document_id, _ in current])
            rows: dict[str, list[tuple[str, bytes | None]]] = defaultdict(list)
            for _, document_id, collection_id in current:
                rows[collection_id].append((document_id, encoded[document_id][1]))
            for collection_id, logged in rows.items():
                _log(conn, collection_id, logged)
            return {document_id for _, document_id, _ in current}

        return await self._run(work)

    async def fail(
        self, document_id: str, version: int, reason: str, *, now: datetime, retry_at: datetime | None
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            current = self._current(conn, document_id, version)
            if current is None:
                return False
            seq, document = current
            if retry_at is not None:
                conn.execute("UPDATE kb_queue SET available_ts = ? WHERE document_seq = ?", (retry_at.timestamp(), seq))
                return True
            _unindex(conn, [seq])
            conn.execute("DELETE FROM kb_queue WHERE document_seq = ?", (seq,))
            _save(conn, document.model_copy(update={"state": IndexState.CANCELLED, "index_error": reason,
                                                    "updated_at": now}))
            return True

        return await self._run(work)

    async def attempts(self, document_id: str) -> int:
        rows = await self._rows("SELECT q.attempts FROM kb_queue q JOIN kb_documents d ON d.seq = q.document_seq"
                                " WHERE d.id = ?", (document_id,))
        return int(rows[0][0]) if rows else 0

    async def search(self, collection_ids: Sequence[str], terms: Sequence[str], *, limit: int) -> list[LexicalHit]:
        """EmbeddedLexical's search, behind this backend's error mapping."""
        return await EmbeddedLexical.search(self, collection_ids, terms, limit=limit)

    async def _lexical_generations(self, collection_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        rows = await self._rows(f"SELECT collection_id, seq, reset FROM kb_lexical_state"
                                f" WHERE collection_id IN ({_marks(collection_ids)})", tuple(collection_ids))
        return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    async def _lexical_page(self, collection_id: str, after: int) -> LogPage:
        def work(conn: sqlite3.Connection) -> LogPage:
            state = conn.execute("SELECT seq, reset FROM kb_lexical_state WHERE collection_id = ?",
                                 (collection_id,)).fetchone()
            rows = conn.execute("SELECT document_id, seq, terms FROM kb_lexical WHERE collection_id = ? AND seq > ?"
                                " ORDER BY seq LIMIT ?", (collection_id, after, PAGE)).fetchall()
            generation, reset = (0, 0) if state is None else (int(state[0]), int(state[1]))
            return LogPage(generation, reset, [LogEntry(row[0], int(row[1]), row[2]) for row in rows])

        return await self._run(work)
