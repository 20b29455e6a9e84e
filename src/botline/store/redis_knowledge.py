"""Redis repositories of knowledge collections and documents, with an inverted index in Redis itself.

Every replica reads the same keys, so a search on any replica sees a write once it is acknowledged.
Per collection and term, a zset of the documents holding it (scored by term frequency); per
collection, a hash of indexed lengths; across the store, document frequencies and totals. BM25 is
computed here with domain/bm25.py (as the SQLite backend does), over the same statistics the
SQLite backend has. Writes that touch a document and its index entries run in one MULTI/EXEC under
WATCH of the documents (and of their term lists), so the index never disagrees with the documents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from botline.domain import bm25
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
from botline.store.redis_base import _dump, _fetch, _fetch_many, _reachable_methods, _Repo, _score

POSTINGS_READ = 5_000
"""Documents read per (collection, term), highest term frequency first: bounds a query on a word that most
documents hold (whose IDF is about 0, so the ones left out would have added almost nothing)."""
PAGE = 1_000
"""Documents read per MGET when a whole collection is walked (browse, export, clear)."""

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

    async def state(self, collection_id: str) -> CollectionState:
        documents = await RedisDocuments(self._redis, self._keys).all_of(collection_id)
        counts = Counter(d.state for d in documents)
        return CollectionState(total=len(documents), indexed=counts[IndexState.INDEXED],
                               queued=counts[IndexState.QUEUED], cancelled=counts[IndexState.CANCELLED])


@_reachable_methods
class RedisDocuments(_Repo, DocumentRepository):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        super().__init__(client, keys)
        self._claim_script = self._redis.register_script(CLAIM_SCRIPT)

    async def all_of(self, collection_id: str) -> list[KnowledgeDocument]:
        """Every document of the collection, oldest first (read in pages)."""
        ids = cast(list[str], await self._redis.zrange(self._keys.kb_documents_of_collection(collection_id), 0, -1))
        found: list[KnowledgeDocument] = []
        for start in range(0, len(ids), PAGE):
            raws = await self._redis.mget([self._keys.kb_document(i) for i in ids[start:start + PAGE]])
            found.extend(KnowledgeDocument.model_validate_json(raw) for raw in raws if raw is not None)
        return found

    def _unindex(self, pipe: Pipeline, document: KnowledgeDocument, terms_json: str | None) -> None:
        """Inside MULTI: the document's indexed text (as read under WATCH) leaves the index."""
        if terms_json is None:
            return
        counts: dict[str, int] = orjson.loads(terms_json)
        for term in counts:
            pipe.zrem(self._keys.kb_postings(document.collection_id, term), document.id)
            pipe.hincrby(self._keys.kb_frequencies(), term, -1)
        pipe.hdel(self._keys.kb_lengths(document.collection_id), document.id)
        pipe.hincrby(self._keys.kb_stats(), "indexed", -1)
        pipe.hincrby(self._keys.kb_stats(), "tokens", -(sum(counts.values()) + 1))
        pipe.delete(self._keys.kb_terms(document.id))

    def _drop(self, pipe: Pipeline, document: KnowledgeDocument, terms_json: str | None) -> None:
        """Inside MULTI: deletes the document, its index entries, pointers and queue entry."""
        self._unindex(pipe, document, terms_json)
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
            watched += [self._keys.kb_terms(i) for i in known + doomed_ids]
            if watched:
                await pipe.watch(*watched)
            stored = {d.name: d for d in await _fetch_many(pipe, KnowledgeDocument, [self._keys.kb_document(i)
                                                                                      for i in known]) if d}
            doomed = [d for d in await _fetch_many(pipe, KnowledgeDocument,
                                                   [self._keys.kb_document(i) for i in doomed_ids]) if d]
            terms_of = await self._terms(pipe, [d.id for d in [*stored.values(), *doomed]])
            pipe.multi()
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
                            self._unindex(pipe, old, terms_of.get(old.id))
                        self._enqueue(pipe, document.id, now)
                kept = document if document is not None else old
                if kept is not None:
                    outcome.results.append((kept.id, plan.state))
            for gone in doomed:
                self._drop(pipe, gone, terms_of.get(gone.id))
            outcome.deleted = len(doomed)
            return outcome

        return await self._atomic(body, collection_key, members, *pointers)

    async def _terms(self, conn: Pipeline, document_ids: Sequence[str]) -> dict[str, str]:
        if not document_ids:
            return {}
        raws = cast(list[str | None], await conn.mget([self._keys.kb_terms(i) for i in document_ids]))
        return {i: raw for i, raw in zip(document_ids, raws, strict=True) if raw is not None}

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
        keys = [self._keys.kb_document(i) for i in document_ids] + [self._keys.kb_terms(i) for i in document_ids]

        async def body(pipe: Pipeline) -> int:
            found = [d for d in await _fetch_many(pipe, KnowledgeDocument, keys[:len(document_ids)]) if d]
            terms_of = await self._terms(pipe, [d.id for d in found])
            pipe.multi()
            for document in found:
                self._drop(pipe, document, terms_of.get(document.id))
            return len(found)

        return await self._atomic(body, *keys)

    async def delete(self, account_id: str, collection_id: str, document_id: str) -> bool:
        if await self.get(account_id, collection_id, document_id) is None:
            return False
        return await self._drop_ids([document_id]) == 1

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
        return removed

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
        """One MULTI under WATCH of every entry's document and term list (retried when one changed)."""
        if not entries:
            return set()
        ids = [e.document_id for e in entries]
        doc_keys = [self._keys.kb_document(i) for i in ids]

        async def body(pipe: Pipeline) -> set[str]:
            documents = await _fetch_many(pipe, KnowledgeDocument, doc_keys)
            current = [(e, d) for e, d in zip(entries, documents, strict=True) if d and d.version == e.version]
            terms_of = await self._terms(pipe, [d.id for _, d in current])
            pipe.multi()
            held: Counter[str] = Counter()
            for entry, document in current:
                self._index(pipe, entry, document, terms_of.get(document.id), now)
                held.update(set(entry.terms))
            for term, holders in held.items():  # one increment per term of the batch, not per document
                pipe.hincrby(self._keys.kb_frequencies(), term, holders)
            return {d.id for _, d in current}

        return await self._atomic(body, *doc_keys, *(self._keys.kb_terms(i) for i in ids))

    def _index(self, pipe: Pipeline, entry: IndexedText, document: KnowledgeDocument, old_terms: str | None,
               now: datetime) -> None:
        """Inside MULTI: replaces the document's indexed text with the entry's terms and marks it Indexed (the
        caller adds the terms' document frequencies)."""
        self._unindex(pipe, document, old_terms)
        counts = Counter(entry.terms)
        for term, tf in counts.items():
            pipe.zadd(self._keys.kb_postings(document.collection_id, term), {document.id: tf})
        length = len(entry.terms) + 1  # as FTS5 counted it (a collection token too), which the scores keep
        pipe.hset(self._keys.kb_lengths(document.collection_id), document.id, length)
        pipe.hincrby(self._keys.kb_stats(), "indexed", 1)
        pipe.hincrby(self._keys.kb_stats(), "tokens", length)
        pipe.set(self._keys.kb_terms(document.id), orjson.dumps(counts))
        indexed = document.model_copy(update={"state": IndexState.INDEXED, "indexed_at": now, "index_error": None})
        pipe.set(self._keys.kb_document(document.id), _dump(indexed))
        self._dequeue(pipe, document.id)

    async def fail(
        self, document_id: str, version: int, reason: str, *, now: datetime, retry_at: datetime | None
    ) -> bool:
        doc_key, terms_key = self._keys.kb_document(document_id), self._keys.kb_terms(document_id)

        async def body(pipe: Pipeline) -> bool:
            document = await _fetch(pipe, KnowledgeDocument, doc_key)
            if document is None or document.version != version:
                return False
            old_terms = cast(str | None, await pipe.get(terms_key))
            pipe.multi()
            if retry_at is not None:
                pipe.zadd(self._keys.kb_queue(), {document_id: _ms(retry_at)})
                return True
            self._unindex(pipe, document, old_terms)
            self._dequeue(pipe, document_id)
            cancelled = document.model_copy(update={"state": IndexState.CANCELLED, "index_error": reason,
                                                    "updated_at": now})
            pipe.set(doc_key, _dump(cancelled))
            return True

        return await self._atomic(body, doc_key, terms_key)

    async def attempts(self, document_id: str) -> int:
        return int(await self._redis.hget(self._keys.kb_queue_attempts(), document_id) or 0)

    async def search(self, collection_ids: Sequence[str], terms: Sequence[str], *, limit: int) -> list[LexicalHit]:
        """Reads the index as `bm25.Plan` says: the rarest term's postings, the other terms' frequencies for
        those documents only, the next term only while the top is not settled."""
        if not collection_ids or not terms:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._keys.kb_frequencies(), list(terms))
            pipe.hmget(self._keys.kb_stats(), ["indexed", "tokens"])
            frequency_reply, stats_reply = await pipe.execute()
        frequencies = [int(f or 0) for f in frequency_reply]
        documents, tokens = (int(v or 0) for v in stats_reply)
        plan = bm25.plan(documents, frequencies)
        average = tokens / documents if documents else 0.0
        scores: dict[str, float] = {}
        seen: set[str] = set()
        for step in range(len(plan.order)):
            scores.update(await self._score_holders(collection_ids, terms, plan, step, average, limit, scores, seen))
            if bm25.settled(scores.values(), limit, plan.bounds[step]):
                break
        weight = bm25.query_weight(documents, frequencies)
        return [LexicalHit(document_id=i, score=bm25.normalise(raw, weight)) for i, raw in bm25.top(scores, limit)]

    async def _score_holders(
        self, collection_ids: Sequence[str], terms: Sequence[str], plan: bm25.Plan, step: int, average: float,
        limit: int, scored: dict[str, float], seen: set[str],
    ) -> dict[str, float]:
        """One step of the plan (bm25.Step): the term's postings and the lengths of the documents new to the
        search, then the later terms' frequencies (ZMSCORE) for the documents that can still reach the top."""
        work: bm25.Step[str] = bm25.Step(plan, step, average, limit, scored)
        async with self._redis.pipeline(transaction=False) as pipe:
            for collection_id in collection_ids:
                pipe.zrange(self._keys.kb_postings(collection_id, terms[plan.order[step]]), 0, POSTINGS_READ - 1,
                            desc=True, withscores=True)
            postings = await pipe.execute()
        owner: dict[str, str] = {}
        held = [(c, [(i, int(tf)) for i, tf in found if i not in seen]) for c, found in zip(collection_ids, postings,
                                                                                             strict=True)]
        held = [(c, documents) for c, documents in held if documents]
        async with self._redis.pipeline(transaction=False) as pipe:
            for collection_id, documents in held:
                pipe.hmget(self._keys.kb_lengths(collection_id), [i for i, _ in documents])
            lengths = await pipe.execute()
        for (collection_id, documents), reply in zip(held, lengths, strict=True):
            for (document_id, tf), length in zip(documents, reply, strict=True):
                seen.add(document_id)
                owner[document_id] = collection_id
                work.hold(document_id, tf, int(length or 0))
        while (lookup := work.next_lookup()) is not None:
            term, ids = lookup
            by_collection: dict[str, list[str]] = {}
            for document_id in ids:
                by_collection.setdefault(owner[document_id], []).append(document_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                for collection_id, members in by_collection.items():
                    pipe.zmscore(self._keys.kb_postings(collection_id, terms[term]), members)
                replies = await pipe.execute()
            work.found(term, {i: int(tf) for members, reply in zip(by_collection.values(), replies, strict=True)
                              for i, tf in zip(members, reply, strict=True) if tf})
        return work.scores()
