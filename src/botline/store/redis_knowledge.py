"""Redis repositories of knowledge collections and documents, with the lexical log (store/lexical_index.py).

Per collection, the log is a zset (document id -> the number of its row) beside a hash of the rows
(base64 encoded terms, "" for a tombstone) and a hash holding the counter and the last reset. Rows are
written by LOG_SCRIPT, queued inside the same MULTI/EXEC (under WATCH of the documents) as the
documents' change, so the index never disagrees with the documents; PAGE_SCRIPT reads the counter and
a page of rows together. Searches run in memory on each replica (EmbeddedLexical).
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

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
    browse,
    plan_upsert,
)
from botline.store.keys import RedisKeys
from botline.store.knowledge import CollectionRepository, DocumentRepository
from botline.store.lexical_index import PAGE as LOG_PAGE
from botline.store.lexical_index import EmbeddedLexical, LogEntry, LogPage
from botline.store.redis_base import _dump, _fetch, _fetch_many, _reachable, _reachable_methods, _Repo, _score, _walks

PAGE = 1_000
"""Documents read per MGET when a whole collection is walked (browse, export, clear)."""

LOG_SCRIPT = """
local rows = {}
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] ~= '' then
    table.insert(rows, i)
  else
    local held = redis.call('HGET', KEYS[3], ARGV[i])
    if held and held ~= '' then table.insert(rows, i) end
  end
end
if #rows == 0 then return 0 end
local last = redis.call('HINCRBY', KEYS[1], 'seq', #rows)
local seq = last - #rows
for _, i in ipairs(rows) do
  seq = seq + 1
  redis.call('ZADD', KEYS[2], seq, ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
return last
"""
"""Writes log rows (pairs of document id and encoded terms, "" for a tombstone; a tombstone only for a
document in the index), each with its own number from the collection's counter."""

RESET_SCRIPT = """
redis.call('DEL', KEYS[2], KEYS[3])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'reset', seq)
return seq
"""

PAGE_SCRIPT = """
local state = redis.call('HMGET', KEYS[1], 'seq', 'reset')
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {state[1] or '0', state[2] or '0'}
for i = 1, #ids, 2 do
  table.insert(out, ids[i])
  table.insert(out, ids[i + 1])
  table.insert(out, redis.call('HGET', KEYS[3], ids[i]) or '')
end
return out
"""

CLAIM_SCRIPT = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HINCRBY', KEYS[2], id, 1)
end
return ids
"""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class LogRows:
    """The log rows one MULTI writes, per collection (queued as one LOG_SCRIPT call each at the end)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = defaultdict(list)

    def tombstone(self, document: KnowledgeDocument) -> None:
        self.rows[document.collection_id] += [document.id, ""]


@_reachable_methods
class RedisCollections(_Repo, CollectionRepository):
    async def create(self, collection: Collection) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.kb_collection(collection.id), _dump(collection))
            pipe.zadd(self._keys.kb_collections_of_account(collection.account_id),
                      {collection.id: _score(collection.created_at)})

        await self._insert([self._keys.kb_collection(collection.id)], f"collection {collection.id}", writes)

    async def get(self, account_id: str, collection_id: str) -> Collection | None:
        collection = await self._get(Collection, self._keys.kb_collection(collection_id))
        return collection if collection is not None and collection.account_id == account_id else None

    async def list_for_account(self, account_id: str) -> list[Collection]:
        return await self._indexed(Collection, self._keys.kb_collections_of_account(account_id),
                                   self._keys.kb_collection)

    async def edit(
        self, account_id: str, collection_id: str, *, name: str, context: str | None, tags: list[str]
    ) -> bool:
        def change(stored: Collection) -> Collection | None:
            if stored.account_id != account_id:
                return None
            return stored.model_copy(update={"name": name, "context": context, "tags": tags})

        return await self._modify(Collection, self._keys.kb_collection(collection_id), change) is not None

    @_walks
    async def delete(self, account_id: str, collection_id: str) -> bool:
        """The collection first (a document write, which watches it, then writes nothing), then its
        documents; the answer comes once both are gone."""
        key = self._keys.kb_collection(collection_id)

        async def body(pipe: Pipeline) -> bool:
            collection = await _fetch(pipe, Collection, key)
            if collection is None or collection.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(key)
            pipe.zrem(self._keys.kb_collections_of_account(account_id), collection_id)
            return True

        if not await self._atomic(body, key):
            return False
        await RedisDocuments(self._redis, self._keys).clear(account_id, collection_id, collection_gone=True)
        return True

    @_walks
    async def state(self, collection_id: str) -> CollectionState:
        documents = await RedisDocuments(self._redis, self._keys).all_of(collection_id)
        counts = Counter(d.state for d in documents)
        return CollectionState(total=len(documents), indexed=counts[IndexState.INDEXED],
                               queued=counts[IndexState.QUEUED], cancelled=counts[IndexState.CANCELLED])


@_reachable_methods
class RedisDocuments(_Repo, EmbeddedLexical, DocumentRepository):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        _Repo.__init__(self, client, keys)
        EmbeddedLexical.__init__(self)
        self._claim_script = self._redis.register_script(CLAIM_SCRIPT)
        self._log_script = self._redis.register_script(LOG_SCRIPT)
        self._reset_script = self._redis.register_script(RESET_SCRIPT)
        self._page_script = self._redis.register_script(PAGE_SCRIPT)

    @_walks
    async def all_of(self, collection_id: str) -> list[KnowledgeDocument]:
        """Every document of the collection, oldest first (read in pages)."""
        ids = cast(list[str], await self._redis.zrange(self._keys.kb_documents_of_collection(collection_id), 0, -1))
        found: list[KnowledgeDocument] = []
        for start in range(0, len(ids), PAGE):
            raws = await self._redis.mget([self._keys.kb_document(i) for i in ids[start:start + PAGE]])
            found.extend(KnowledgeDocument.model_validate_json(raw) for raw in raws if raw is not None)
        return found

    def _lexical_keys(self, collection_id: str) -> list[str]:
        return [self._keys.kb_lexical_state(collection_id), self._keys.kb_lexical_log(collection_id),
                self._keys.kb_lexical_terms(collection_id)]

    async def _log(self, pipe: Pipeline, rows: LogRows) -> None:
        """Inside MULTI: queues the collected log rows."""
        for collection_id, args in rows.rows.items():
            await self._log_script(keys=self._lexical_keys(collection_id), args=args, client=pipe)

    def _drop(self, pipe: Pipeline, document: KnowledgeDocument, rows: LogRows) -> None:
        """Inside MULTI: deletes the document, its pointers and queue entry (its tombstone goes in `rows`)."""
        rows.tombstone(document)
        pipe.delete(self._keys.kb_document(document.id), self._keys.kb_document_by_name(document.collection_id,
                                                                                         document.name))
        pipe.zrem(self._keys.kb_documents_of_collection(document.collection_id), document.id)
        if document.reference is not None:
            pipe.srem(self._keys.kb_with_reference(document.collection_id, document.reference), document.id)
        self._dequeue(pipe, document.id)

    def _dequeue(self, pipe: Pipeline, document_id: str) -> None:
        pipe.zrem(self._keys.kb_queue(), document_id)
        pipe.hdel(self._keys.kb_queue_attempts(), document_id)

    def _enqueue(self, pipe: Pipeline, document_id: str, now: datetime) -> None:
        pipe.zadd(self._keys.kb_queue(), {document_id: _ms(now)})
        pipe.hset(self._keys.kb_queue_attempts(), document_id, 0)

    def _store(self, pipe: Pipeline, document: KnowledgeDocument, old: KnowledgeDocument | None) -> None:
        """Inside MULTI: writes the document and moves its reference index entry."""
        pipe.set(self._keys.kb_document(document.id), _dump(document))
        if old is not None and old.reference not in (None, document.reference):
            pipe.srem(self._keys.kb_with_reference(document.collection_id, old.reference), document.id)
        if document.reference is not None:
            pipe.sadd(self._keys.kb_with_reference(document.collection_id, document.reference), document.id)

    async def write(
        self, account_id: str, collection_id: str, writes: Sequence[DocumentWrite], *, now: datetime,
        labels: LabelChanges, sync: bool = False,
    ) -> WriteOutcome | None:
        collection_key = self._keys.kb_collection(collection_id)
        pointers = [self._keys.kb_document_by_name(collection_id, w.name) for w in writes]
        members = self._keys.kb_documents_of_collection(collection_id)

        async def body(pipe: Pipeline) -> WriteOutcome | None:
            collection = await _fetch(pipe, Collection, collection_key)
            if collection is None or collection.account_id != account_id:
                return None
            ids = cast(list[str | None], await pipe.mget(pointers)) if pointers else []
            known = [i for i in ids if i is not None]
            doomed_ids: list[str] = []
            if sync:
                keep = set(known)
                doomed_ids = [i for i in cast(list[str], await pipe.zrange(members, 0, -1)) if i not in keep]
            watched = [self._keys.kb_document(i) for i in known + doomed_ids]
            if watched:
                await pipe.watch(*watched)
            stored = {d.name: d for d in await _fetch_many(pipe, KnowledgeDocument, [self._keys.kb_document(i)
                                                                                      for i in known]) if d}
            doomed = [d for d in await _fetch_many(pipe, KnowledgeDocument,
                                                   [self._keys.kb_document(i) for i in doomed_ids]) if d]
            pipe.multi()
            rows = LogRows()
            outcome = WriteOutcome()
            for write in writes:
                old = stored.get(write.name)
                plan = plan_upsert(old, write, account_id=account_id, collection_id=collection_id, now=now,
                                   labels=labels)
                document = plan.document
                if document is not None:
                    self._store(pipe, document, old)
                    if old is None:
                        pipe.set(self._keys.kb_document_by_name(collection_id, document.name), document.id)
                        pipe.zadd(members, {document.id: _score(document.created_at)})
                    if plan.reindex:
                        if old is not None:
                            rows.tombstone(old)
                        self._enqueue(pipe, document.id, now)
                kept = document if document is not None else old
                if kept is not None:
                    outcome.results.append((kept.id, plan.state))
            for gone in doomed:
                self._drop(pipe, gone, rows)
            await self._log(pipe, rows)
            outcome.deleted = len(doomed)
            return outcome

        return await self._atomic(body, collection_key, members, *pointers)

    async def get(self, account_id: str, collection_id: str, document_id: str) -> KnowledgeDocument | None:
        document = await self._get(KnowledgeDocument, self._keys.kb_document(document_id))
        if document is None or (document.account_id, document.collection_id) != (account_id, collection_id):
            return None
        return document

    async def many(self, account_id: str, document_ids: Sequence[str]) -> list[KnowledgeDocument]:
        if not document_ids:
            return []
        raws = await self._redis.mget([self._keys.kb_document(i) for i in document_ids])
        found = [KnowledgeDocument.model_validate_json(raw) for raw in raws if raw is not None]
        return [d for d in found if d.account_id == account_id]

    @_walks
    async def browse(self, account_id: str, collection_id: str, query: BrowseQuery) -> list[KnowledgeDocument]:
        """Reads the whole collection and filters it here: O(collection) per call (docs/api.md says so)."""
        documents = [d for d in await self.all_of(collection_id) if d.account_id == account_id]
        return browse(documents, query)

    async def with_reference(self, collection_id: str, reference: str) -> list[KnowledgeDocument]:
        ids = cast(list[str], list(await self._redis.smembers(self._keys.kb_with_reference(collection_id, reference))))
        if not ids:
            return []
        raws = await self._redis.mget([self._keys.kb_document(i) for i in ids])
        found = [KnowledgeDocument.model_validate_json(raw) for raw in raws if raw is not None]
        return sorted(found, key=lambda d: (d.created_at, d.id))

    async def _drop_ids(self, document_ids: Sequence[str]) -> int:
        """Deletes the documents (those still there) with their index entries; how many this call removed."""
        if not document_ids:
            return 0
        keys = [self._keys.kb_document(i) for i in document_ids]

        async def body(pipe: Pipeline) -> int:
            found = [d for d in await _fetch_many(pipe, KnowledgeDocument, keys) if d]
            pipe.multi()
            rows = LogRows()
            for document in found:
                self._drop(pipe, document, rows)
            await self._log(pipe, rows)
            return len(found)

        return await self._atomic(body, *keys)

    async def delete(self, account_id: str, collection_id: str, document_id: str) -> bool:
        if await self.get(account_id, collection_id, document_id) is None:
            return False
        return await self._drop_ids([document_id]) == 1

    @_walks
    async def clear(self, account_id: str, collection_id: str, *, collection_gone: bool = False) -> int:
        """`collection_gone`: the collection was deleted, so its documents go whoever owns them (none may be left)."""
        if not collection_gone:
            collection = await self._get(Collection, self._keys.kb_collection(collection_id))
            if collection is None or collection.account_id != account_id:
                return 0
        ids = cast(list[str], await self._redis.zrange(self._keys.kb_documents_of_collection(collection_id), 0, -1))
        removed = 0
        for start in range(0, len(ids), PAGE):
            removed += await self._drop_ids(ids[start:start + PAGE])
        if ids or collection_gone:  # the tombstones out of the log too
            await self._reset_script(keys=self._lexical_keys(collection_id))
        return removed

    @_walks
    async def requeue(self, account_id: str, collection_id: str, *, now: datetime) -> int:
        documents = [d for d in await self.all_of(collection_id) if d.account_id == account_id]
        for document in documents:
            def change(stored: KnowledgeDocument) -> KnowledgeDocument:
                return stored.model_copy(update={"state": IndexState.QUEUED, "index_error": None})

            def also(pipe: Pipeline, changed: KnowledgeDocument) -> None:
                self._enqueue(pipe, changed.id, now)

            await self._modify(KnowledgeDocument, self._keys.kb_document(document.id), change, also)
        return len(documents)

    async def claim(self, now: datetime, *, lease_seconds: float, limit: int) -> list[KnowledgeDocument]:
        ids = cast(list[str], await self._claim_script(
            keys=[self._keys.kb_queue(), self._keys.kb_queue_attempts()],
            args=[_ms(now), _ms(now) + int(lease_seconds * 1000), limit],
        ))
        if not ids:
            return []
        raws = await self._redis.mget([self._keys.kb_document(i) for i in ids])
        return [KnowledgeDocument.model_validate_json(raw) for raw in raws if raw is not None]

    async def complete(self, entries: Sequence[IndexedText], *, now: datetime) -> set[str]:
        """One MULTI under WATCH of every entry's document (retried when one changed)."""
        if not entries:
            return set()
        doc_keys = [self._keys.kb_document(e.document_id) for e in entries]
        encoded = [base64.b64encode(e.row).decode() for e in entries]

        async def body(pipe: Pipeline) -> set[str]:
            documents = await _fetch_many(pipe, KnowledgeDocument, doc_keys)
            pipe.multi()
            rows = LogRows()
            written: set[str] = set()
            for blob, entry, document in zip(encoded, entries, documents, strict=True):
                if document is None or document.version != entry.version:
                    continue
                rows.rows[document.collection_id] += [document.id, blob]
                indexed = document.model_copy(update={"state": IndexState.INDEXED, "indexed_at": now,
                                                      "index_error": None})
                pipe.set(self._keys.kb_document(document.id), _dump(indexed))
                self._dequeue(pipe, document.id)
                written.add(document.id)
            await self._log(pipe, rows)
            return written

        return await self._atomic(body, *doc_keys)

    async def fail(
        self, document_id: str, version: int, reason: str, *, now: datetime, retry_at: datetime | None
    ) -> bool:
        doc_key = self._keys.kb_document(document_id)

        async def body(pipe: Pipeline) -> bool:
            document = await _fetch(pipe, KnowledgeDocument, doc_key)
            if document is None or document.version != version:
                return False
            pipe.multi()
            if retry_at is not None:
                pipe.zadd(self._keys.kb_queue(), {document_id: _ms(retry_at)})
                return True
            rows = LogRows()
            rows.tombstone(document)
            await self._log(pipe, rows)
            self._dequeue(pipe, document_id)
            cancelled = document.model_copy(update={"state": IndexState.CANCELLED, "index_error": reason,
                                                    "updated_at": now})
            pipe.set(doc_key, _dump(cancelled))
            return True

        return await self._atomic(body, doc_key)

    @_walks
    async def reindex_legacy(self, now: datetime) -> int:
        """Before the log, Redis held per-term zsets (kb_stats existed while any document was indexed)."""
        stats = self._keys.kb_legacy_index_markers()[-1]
        if not await self._redis.exists(stats):
            return 0
        queued = 0
        async for of_account in self._redis.scan_iter(match=self._keys.kb_collections_of_accounts_pattern()):
            account_id = of_account.split(":")[-2]
            for collection_id in cast(list[str], await self._redis.zrange(of_account, 0, -1)):
                queued += await self.requeue(account_id, collection_id, now=now)
        for pattern in self._keys.kb_legacy_index_patterns():
            doomed: list[str] = []
            async for key in self._redis.scan_iter(match=pattern, count=PAGE):
                doomed.append(key)
                if len(doomed) == PAGE:
                    await self._redis.unlink(*doomed)
                    doomed = []
            if doomed:
                await self._redis.unlink(*doomed)
        await self._redis.unlink(*self._keys.kb_legacy_index_markers())
        return queued

    async def attempts(self, document_id: str) -> int:
        return int(await self._redis.hget(self._keys.kb_queue_attempts(), document_id) or 0)

    @_walks
    async def search(self, collection_ids: Sequence[str], terms: Sequence[str], *, limit: int) -> list[LexicalHit]:
        """EmbeddedLexical's search, behind this backend's error mapping."""
        return await EmbeddedLexical.search(self, collection_ids, terms, limit=limit)

    @_reachable
    async def _lexical_generations(self, collection_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for collection_id in collection_ids:
                pipe.hmget(self._keys.kb_lexical_state(collection_id), "seq", "reset")
            answers = await pipe.execute()
        return {c: (int(seq), int(reset or 0)) for c, (seq, reset) in zip(collection_ids, answers, strict=True)
                if seq is not None}

    @_reachable
    async def _lexical_page(self, collection_id: str, after: int) -> LogPage:
        reply = cast(list[str], await self._page_script(keys=self._lexical_keys(collection_id),
                                                        args=[after, LOG_PAGE]))
        entries = [LogEntry(reply[i], int(reply[i + 1]), base64.b64decode(reply[i + 2]) if reply[i + 2] else None)
                   for i in range(2, len(reply), 3)]
        return LogPage(int(reply[0]), int(reply[1]), entries)
