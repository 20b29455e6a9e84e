"""What only the SQLite backend does: a file that survives reopening, migrated once; writes batched."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botline.domain.accounts import Account
from botline.domain.conversations import Message, Role, Session
from botline.domain.knowledge import Collection, IndexedText, IndexState, KnowledgeDocument
from botline.knowledge.analysis import query_terms, terms
from botline.store.base import ConflictError, SessionChange
from botline.store.sqlite import SqliteStore, _migrations

FTS5_VERSION = 17
"""The last schema whose lexical index was FTS5."""


async def test_reopening_the_same_file_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "botline.db")
    alice = Account(name="alice", salt="s")
    async with await SqliteStore.open(path) as first:
        await first.accounts.create(alice)
    for _ in range(2):
        async with await SqliteStore.open(path) as reopened:
            assert await reopened.accounts.get(alice.id) == alice
            assert await reopened.accounts.list() == [alice]


async def test_concurrent_writes_stand_or_fall_alone(tmp_path: Path) -> None:
    """Writes sent together share one transaction on SQLite's thread: one that fails leaves nothing
    of itself behind (not even its counter update) and takes none of the others with it."""
    now = datetime.now(UTC)
    async with await SqliteStore.open(str(tmp_path / "botline.db")) as store:
        session = Session(account_id="acc", chat_client_id="client", access_key="wk_test",
                          expires_at=now + timedelta(days=1))
        await store.sessions.create(session)
        taken = Message(session_id=session.id, role=Role.USER, content="first", created_at=now)
        await store.sessions.add_messages("acc", session.id, [taken], SessionChange(messages=1, last_message_at=now))
        fresh = [Message(session_id=session.id, role=Role.USER, content=f"m{n}", created_at=now) for n in range(20)]
        writes = [store.sessions.add_messages("acc", session.id, [m], SessionChange(messages=1, tokens=1))
                  for m in fresh[:10]]
        writes.append(store.sessions.add_messages(  # a new message and one whose id is taken: all or nothing
            "acc", session.id, [Message(session_id=session.id, role=Role.USER, content="lost", created_at=now),
                                taken], SessionChange(messages=2, tokens=100)))
        writes += [store.sessions.add_messages("acc", session.id, [m], SessionChange(messages=1, tokens=1))
                   for m in fresh[10:]]
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == [results[10]]
        assert isinstance(results[10], ConflictError)
        found = await store.sessions.get_with_messages("acc", session.id)
        assert found is not None
        stored, messages = found
        assert [m.content for m in messages] == ["first", *(m.content for m in fresh)]
        assert (stored.message_count, stored.token_count) == (21, 20)


async def test_documents_an_fts5_version_indexed_are_indexed_again_and_found(tmp_path: Path) -> None:
    """A database of the version that indexed with FTS5: once upgraded, its indexed documents are queued
    again (the lexical log starts empty), and once the indexer has been through them they are found."""
    path = tmp_path / "botline.db"
    collection = Collection(account_id="acc", name="FAQ")
    document = KnowledgeDocument(account_id="acc", collection_id=collection.id, name="plans",
                                 contents="premium plan price", state=IndexState.INDEXED, indexed_at=datetime.now(UTC))
    with closing(sqlite3.connect(path)) as old:
        for version, script in _migrations():
            if version <= FTS5_VERSION:
                old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        old.execute("INSERT INTO kb_collections (id, account_id, created_at, data) VALUES (?, ?, ?, ?)",
                    (collection.id, "acc", collection.created_at.isoformat(),
                     collection.model_dump_json(by_alias=True)))
        old.execute("INSERT INTO kb_documents (seq, id, account_id, collection_id, name, state, version,"
                    " created_ts, updated_ts, indexed_ts, in_index, data)"
                    " VALUES (1, ?, 'acc', ?, 'plans', 'Indexed', 1, 0, 0, 0, 1, ?)",
                    (document.id, collection.id, document.model_dump_json(by_alias=True)))
        old.execute("INSERT INTO kb_fts (rowid, coll, body) VALUES (1, 'kfaq', 'premium plan price')")
        old.commit()
    async with await SqliteStore.open(str(path)) as store:
        stored = await store.documents.get("acc", collection.id, document.id)
        assert stored is not None and stored.state is IndexState.QUEUED
        claimed = await store.documents.claim(datetime.now(UTC), lease_seconds=60, limit=10)
        assert [d.id for d in claimed] == [document.id]
        await store.documents.complete([IndexedText.of(document.id, 1, terms(document.contents))],
                                       now=datetime.now(UTC))
        hits = await store.documents.search([collection.id], query_terms("price"), limit=5)
        assert [h.document_id for h in hits] == [document.id]


async def test_a_turns_lease_taken_with_its_history_is_given_back_when_the_read_is_cancelled(tmp_path: Path) -> None:
    """SQLite's leases are kept in the process (`immediate`): SessionLocks calls lease_with_messages with
    no task to shield it, so a cancel landing during the read must not leave the session locked."""
    now = datetime.now(UTC)
    async with await SqliteStore.open(str(tmp_path / "botline.db")) as store:
        assert store.locks.immediate
        session = Session(account_id="acc", chat_client_id="client", access_key="wk_test",
                          expires_at=now + timedelta(days=1))
        await store.sessions.create(session)
        read = asyncio.create_task(store.sessions.lease_with_messages("acc", session.id, "lease", ttl_seconds=30))
        await asyncio.sleep(0)  # the lease is taken and the read sent to SQLite's thread
        assert await store.locks.acquire("lease", ttl_seconds=30) is None
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        assert read.cancelled()
        assert await store.locks.acquire("lease", ttl_seconds=30) is not None
