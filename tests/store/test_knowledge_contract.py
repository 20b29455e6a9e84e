"""The Store contract for knowledge collections, documents, the indexing queue and lexical search
(every backend: see conftest `store`)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from botline.domain import bm25
from botline.domain.knowledge import (
    BrowseQuery,
    Collection,
    DocumentFilter,
    DocumentOrder,
    DocumentWrite,
    IndexedText,
    IndexState,
    LabelChanges,
    UpsertState,
)
from botline.knowledge.analysis import query_terms, terms
from botline.store import Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE, BOB = "account-alice", "account-bob"
LEASE = 60.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def collection(store: Store, account: str = ALICE, name: str = "FAQ") -> str:
    created = Collection(account_id=account, name=name, created_at=T0)
    await store.collections.create(created)
    return created.id


async def write(store: Store, collection_id: str, *docs: DocumentWrite, account: str = ALICE, now: datetime = T0,
                labels: LabelChanges = LabelChanges.SKIP, sync: bool = False) -> list[tuple[str, UpsertState]]:
    outcome = await store.documents.write(account, collection_id, docs, now=now, labels=labels, sync=sync)
    assert outcome is not None
    return outcome.results


async def index_all(store: Store, now: datetime = T0) -> int:
    claimed = await store.documents.claim(now, lease_seconds=LEASE, limit=1000)
    entries = [IndexedText.of(d.id, d.version, terms(d.contents)) for d in claimed]
    assert await store.documents.complete(entries, now=now) == {d.id for d in claimed}
    return len(claimed)


async def found(store: Store, collection_ids: list[str], query: str) -> list[str]:
    hits = await store.documents.search(collection_ids, query_terms(query), limit=10)
    documents = {d.id: d.name for d in await store.documents.many(ALICE, [h.document_id for h in hits])}
    return [documents[h.document_id] for h in hits]


class TestCollections:
    async def test_created_collection_reads_back_and_is_the_accounts_only(self, store: Store) -> None:
        collection_id = await collection(store)
        stored = await store.collections.get(ALICE, collection_id)
        assert stored is not None and stored.name == "FAQ"
        assert await store.collections.get(BOB, collection_id) is None
        assert [c.id for c in await store.collections.list_for_account(ALICE)] == [collection_id]
        assert await store.collections.list_for_account(BOB) == []

    async def test_edit_sets_name_context_and_tags(self, store: Store) -> None:
        collection_id = await collection(store)
        assert await store.collections.edit(ALICE, collection_id, name="Prices", context="Plans", tags=["a", "b"])
        assert not await store.collections.edit(BOB, collection_id, name="x", context=None, tags=[])
        stored = await store.collections.get(ALICE, collection_id)
        assert stored is not None and (stored.name, stored.context, stored.tags) == ("Prices", "Plans", ["a", "b"])

    async def test_delete_takes_its_documents_and_their_index_entries(self, store: Store) -> None:
        collection_id = await collection(store)
        results = await write(store, collection_id, DocumentWrite(name="d1", contents="refund policy"))
        await index_all(store)
        assert not await store.collections.delete(BOB, collection_id)
        assert await store.collections.delete(ALICE, collection_id)
        assert await store.collections.get(ALICE, collection_id) is None
        assert await store.documents.many(ALICE, [results[0][0]]) == []
        assert await store.documents.search([collection_id], query_terms("refund"), limit=5) == []

    async def test_state_counts_documents_by_index_state(self, store: Store) -> None:
        collection_id = await collection(store)
        await write(store, collection_id, DocumentWrite(name="a", contents="one"),
                    DocumentWrite(name="b", contents="two"))
        claimed = await store.documents.claim(T0, lease_seconds=LEASE, limit=1)
        await store.documents.complete([IndexedText.of(claimed[0].id, claimed[0].version, ["one"])], now=T0)
        state = await store.collections.state(collection_id)
        assert (state.total, state.indexed, state.queued) == (2, 1, 1)


class TestWrites:
    async def test_upsert_states_follow_the_seed_rules(self, store: Store) -> None:
        collection_id = await collection(store)
        [(doc_id, created)] = await write(store, collection_id, DocumentWrite(name="d", contents="hello"))
        assert created is UpsertState.CREATED
        assert await write(store, collection_id, DocumentWrite(name="d", contents="hello")) == [
            (doc_id, UpsertState.NOT_MODIFIED)]
        assert await write(store, collection_id, DocumentWrite(name="d", contents="hello again")) == [
            (doc_id, UpsertState.MODIFIED)]
        stored = await store.documents.get(ALICE, collection_id, doc_id)
        assert stored is not None and stored.version == 2 and stored.state is IndexState.QUEUED

    async def test_a_metadata_only_change_is_saved_without_reindexing(self, store: Store) -> None:
        collection_id = await collection(store)
        [(doc_id, _)] = await write(store, collection_id, DocumentWrite(name="d", contents="hello"))
        await index_all(store)
        assert await write(store, collection_id, DocumentWrite(name="d", contents="hello", metadata={"k": 1})) == [
            (doc_id, UpsertState.MODIFIED)]
        stored = await store.documents.get(ALICE, collection_id, doc_id)
        assert stored is not None and stored.metadata == {"k": 1} and stored.state is IndexState.INDEXED
        assert await store.documents.claim(T0, lease_seconds=LEASE, limit=10) == []

    async def test_changed_text_with_null_metadata_keeps_the_stored_metadata(self, store: Store) -> None:
        collection_id = await collection(store)
        [(doc_id, _)] = await write(store, collection_id, DocumentWrite(name="d", contents="a", metadata={"k": 1}))
        await write(store, collection_id, DocumentWrite(name="d", contents="b"))
        stored = await store.documents.get(ALICE, collection_id, doc_id)
        assert stored is not None and stored.metadata == {"k": 1} and stored.contents == "b"

    async def test_import_skips_label_only_changes_and_put_saves_them(self, store: Store) -> None:
        collection_id = await collection(store)
        [(doc_id, _)] = await write(store, collection_id, DocumentWrite(name="d", contents="a", reference="r1"))
        relabel = DocumentWrite(name="d", contents="a", reference="r2", tags=["t"])
        assert await write(store, collection_id, relabel) == [(doc_id, UpsertState.NOT_MODIFIED)]
        assert await write(store, collection_id, relabel, labels=LabelChanges.SAVE) == [(doc_id, UpsertState.MODIFIED)]
        stored = await store.documents.get(ALICE, collection_id, doc_id)
        assert stored is not None and (stored.reference, stored.tags) == ("r2", ["t"])
        assert [d.id for d in await store.documents.with_reference(collection_id, "r2")] == [doc_id]
        assert await store.documents.with_reference(collection_id, "r1") == []

    async def test_sync_deletes_the_documents_absent_from_the_writes(self, store: Store) -> None:
        collection_id = await collection(store)
        await write(store, collection_id, DocumentWrite(name="keep", contents="a"),
                    DocumentWrite(name="drop", contents="b"))
        await index_all(store)
        outcome = await store.documents.write(ALICE, collection_id, [DocumentWrite(name="keep", contents="a")],
                                              now=T0, labels=LabelChanges.SKIP, sync=True)
        assert outcome is not None and outcome.deleted == 1
        assert [d.name for d in await store.documents.browse(ALICE, collection_id, BrowseQuery())] == ["keep"]
        assert await found(store, [collection_id], "b") == []

    async def test_writing_into_another_accounts_collection_writes_nothing(self, store: Store) -> None:
        collection_id = await collection(store)
        assert await store.documents.write(BOB, collection_id, [DocumentWrite(name="x", contents="y")], now=T0,
                                           labels=LabelChanges.SKIP) is None
        assert await store.documents.browse(ALICE, collection_id, BrowseQuery()) == []

    async def test_delete_and_clear_are_scoped_by_account(self, store: Store) -> None:
        collection_id = await collection(store)
        [(doc_id, _)] = await write(store, collection_id, DocumentWrite(name="a", contents="x"))
        await write(store, collection_id, DocumentWrite(name="b", contents="y"))
        assert not await store.documents.delete(BOB, collection_id, doc_id)
        assert await store.documents.delete(ALICE, collection_id, doc_id)
        assert await store.documents.get(ALICE, collection_id, doc_id) is None
        assert await store.documents.clear(BOB, collection_id) == 0
        assert await store.documents.clear(ALICE, collection_id) == 1
        assert await store.collections.get(ALICE, collection_id) is not None


class TestBrowse:
    async def _three(self, store: Store) -> str:
        collection_id = await collection(store)
        await write(store, collection_id, DocumentWrite(name="Refund policy", contents="Money back in 7 days",
                                                        tags=["billing"], reference="ref-1"), now=at(0))
        await write(store, collection_id, DocumentWrite(name="Shipping", contents="Entrega em até 5 dias úteis",
                                                        tags=["logistics"]), now=at(1))
        await write(store, collection_id, DocumentWrite(name="Refund form", contents="Fill the FORM",
                                                        tags=["billing"], reference="ref-1"), now=at(2))
        return collection_id

    async def _names(self, store: Store, collection_id: str, **query: object) -> list[str]:
        return [d.name for d in await store.documents.browse(ALICE, collection_id, BrowseQuery(**query))]  # type: ignore[arg-type]

    async def test_filters_combine_and_match_as_documented(self, store: Store) -> None:
        c = await self._three(store)
        assert await self._names(store, c, filter=DocumentFilter(tag="billing")) == ["Refund form", "Refund policy"]
        assert await self._names(store, c, filter=DocumentFilter(name="refund", content="form")) == ["Refund form"]
        assert await self._names(store, c, filter=DocumentFilter(content="ÚTEIS")) == ["Shipping"]
        assert await self._names(store, c, filter=DocumentFilter(reference="ref-1", tag="billing")) == [
            "Refund form", "Refund policy"]
        assert await self._names(store, c, filter=DocumentFilter(reference="ref")) == []

    async def test_order_state_and_paging(self, store: Store) -> None:
        c = await self._three(store)
        assert await self._names(store, c, order=DocumentOrder.CREATED_ASC) == [
            "Refund policy", "Shipping", "Refund form"]
        assert await self._names(store, c, order=DocumentOrder.CREATED_ASC, offset=1, limit=1) == ["Shipping"]
        claimed = await store.documents.claim(at(5), lease_seconds=LEASE, limit=1)
        await store.documents.complete([IndexedText.of(claimed[0].id, claimed[0].version, ["x"])], now=at(5))
        assert await self._names(store, c, state=IndexState.INDEXED) == [claimed[0].name]
        assert (await self._names(store, c, order=DocumentOrder.INDEXED_DESC))[0] == claimed[0].name
        assert (await self._names(store, c, order=DocumentOrder.INDEXED_ASC))[-1] == claimed[0].name


class TestQueue:
    async def test_each_queued_document_is_claimed_by_exactly_one_caller(self, store: Store) -> None:
        collection_id = await collection(store)
        await write(store, collection_id, *(DocumentWrite(name=f"d{i}", contents=f"text {i}") for i in range(20)))
        batches = await asyncio.gather(*(store.documents.claim(T0, lease_seconds=LEASE, limit=7) for _ in range(5)))
        ids = [d.id for batch in batches for d in batch]
        assert len(ids) == 20 and len(set(ids)) == 20

    async def test_a_claim_whose_lease_ended_is_claimed_again(self, store: Store) -> None:
        collection_id = await collection(store)
        await write(store, collection_id, DocumentWrite(name="d", contents="text"))
        [first] = await store.documents.claim(T0, lease_seconds=LEASE, limit=5)
        assert await store.documents.claim(at(LEASE - 1), lease_seconds=LEASE, limit=5) == []
        [again] = await store.documents.claim(at(LEASE + 1), lease_seconds=LEASE, limit=5)
        assert again.id == first.id and await store.documents.attempts(first.id) == 2

    async def test_completing_a_replaced_version_writes_nothing(self, store: Store) -> None:
        collection_id = await collection(store)
        await write(store, collection_id, DocumentWrite(name="d", contents="old words"))
        [claimed] = await store.documents.claim(T0, lease_seconds=LEASE, limit=5)
        await write(store, collection_id, DocumentWrite(name="d", contents="new words"))
        stale = IndexedText.of(claimed.id, claimed.version, terms(claimed.contents))
        assert await store.documents.complete([stale], now=T0) == set()
        assert await found(store, [collection_id], "old") == []
        [fresh] = await store.documents.claim(T0, lease_seconds=LEASE, limit=5)
        assert fresh.contents == "new words"

    async def test_a_failure_retries_then_gives_up_with_its_reason(self, store: Store) -> None:
        collection_id = await collection(store)
        [(doc_id, _)] = await write(store, collection_id, DocumentWrite(name="d", contents="text"))
        [claimed] = await store.documents.claim(T0, lease_seconds=LEASE, limit=5)
        assert await store.documents.fail(doc_id, claimed.version, "boom", now=T0, retry_at=at(10))
        assert await store.documents.claim(at(5), lease_seconds=LEASE, limit=5) == []
        [again] = await store.documents.claim(at(10), lease_seconds=LEASE, limit=5)
        assert await store.documents.fail(doc_id, again.version, "embedding server down", now=at(10), retry_at=None)
        stored = await store.documents.get(ALICE, collection_id, doc_id)
        assert stored is not None and stored.state is IndexState.CANCELLED
        assert stored.index_error == "embedding server down"
        assert await store.documents.claim(at(1000), lease_seconds=LEASE, limit=5) == []

    async def test_requeue_keeps_unchanged_text_searchable(self, store: Store) -> None:
        collection_id = await collection(store)
        await write(store, collection_id, DocumentWrite(name="d", contents="warranty terms"))
        await index_all(store)
        assert await store.documents.requeue(ALICE, collection_id, now=T0) == 1
        assert (await store.collections.state(collection_id)).queued == 1
        assert await found(store, [collection_id], "warranty") == ["d"]
        assert await index_all(store) == 1


def fts5_scores(texts: dict[str, str], query: list[str], names: list[str]) -> dict[str, float]:
    """The normalised BM25 scores FTS5's formula gives `names` of the collection `texts` for `query`."""
    lengths = {name: len(terms(text)) + 1 for name, text in texts.items()}
    average = sum(lengths.values()) / len(lengths)
    frequencies = [sum(1 for text in texts.values() if term in terms(text)) for term in query]
    return {
        name: bm25.normalise(sum(
            bm25.term_score(bm25.idf(len(texts), df), terms(texts[name]).count(term), lengths[name], average)
            for term, df in zip(query, frequencies, strict=True)), bm25.query_weight(len(texts), frequencies))
        for name in names
    }


class TestSearch:
    async def test_only_indexed_text_of_the_given_collections_is_found(self, store: Store) -> None:
        faq, other = await collection(store), await collection(store, name="Other")
        await write(store, faq, DocumentWrite(name="refund", contents="Refunds are paid within 7 days."),
                    DocumentWrite(name="shipping", contents="We ship worldwide."))
        await write(store, other, DocumentWrite(name="other-refund", contents="Refunds elsewhere."))
        assert await found(store, [faq], "refund") == []
        await index_all(store)
        assert await found(store, [faq], "refunds") == ["refund"]
        assert sorted(await found(store, [faq, other], "refund")) == ["other-refund", "refund"]

    async def test_replaced_and_deleted_text_is_never_returned(self, store: Store) -> None:
        c = await collection(store)
        [(doc_id, _)] = await write(store, c, DocumentWrite(name="d", contents="blue elephant"))
        await index_all(store)
        await write(store, c, DocumentWrite(name="d", contents="red giraffe"))
        assert await found(store, [c], "elephant") == []
        await index_all(store)
        assert await found(store, [c], "giraffe") == ["d"] and await found(store, [c], "elephant") == []
        await store.documents.delete(ALICE, c, doc_id)
        assert await found(store, [c], "giraffe") == []

    async def test_scores_are_between_0_and_1_best_first(self, store: Store) -> None:
        c = await collection(store)
        await write(store, c, DocumentWrite(name="both", contents="premium plan price"),
                    DocumentWrite(name="one", contents="premium support hours"),
                    *(DocumentWrite(name=f"filler{i}", contents=f"unrelated text number {i}") for i in range(6)))
        await index_all(store)
        hits = await store.documents.search([c], query_terms("premium plan price"), limit=5)
        assert len(hits) == 2 and hits[0].score > hits[1].score
        assert all(0 < h.score <= 1 for h in hits) and hits[0].score > 0.9

    async def test_both_backends_score_with_fts5s_bm25_formula(self, store: Store) -> None:
        c = await collection(store)
        texts = {"d1": "alpha beta", "d2": "alpha alpha gamma gamma gamma", **{f"f{i}": f"delta {i}" for i in range(4)}}
        await write(store, c, *(DocumentWrite(name=name, contents=text) for name, text in texts.items()))
        await index_all(store)
        query = query_terms("alpha")
        expected = fts5_scores(texts, query, ["d1", "d2"])
        hits = await store.documents.search([c], query, limit=5)
        names = {d.id: d.name for d in await store.documents.many(ALICE, [h.document_id for h in hits])}
        assert {names[h.document_id]: round(h.score, 9) for h in hits} == {k: round(v, 9) for k, v in expected.items()}
        assert [names[h.document_id] for h in hits] == ["d2", "d1"]


    async def test_a_term_repeated_past_255_times_scores_exactly_after_segments_merge(self, store: Store) -> None:
        """Postings are held as one byte per frequency where every one fits: a document repeating a term
        300 times keeps its count when its segment merges with one-byte segments."""
        c = await collection(store)
        texts = {"long": " ".join(["alpha"] * 300 + ["beta"])}
        await write(store, c, DocumentWrite(name="long", contents=texts["long"]))
        await index_all(store)
        assert await store.documents.search([c], query_terms("alpha"), limit=5)  # the first segment
        more = {"d2": "alpha alpha gamma", **{f"f{i}": f"delta epsilon {i}" for i in range(8)}}
        await write(store, c, *(DocumentWrite(name=name, contents=text) for name, text in more.items()))
        await index_all(store)
        texts |= more
        query = query_terms("alpha gamma")  # gamma's IDF keeps the long document's score under the 1.0 cap
        expected = fts5_scores(texts, query, ["long", "d2"])
        assert expected["long"] < 1.0
        hits = await store.documents.search([c], query, limit=5)
        names = {d.id: d.name for d in await store.documents.many(ALICE, [h.document_id for h in hits])}
        assert {names[h.document_id]: round(h.score, 9) for h in hits} == {k: round(v, 9) for k, v in expected.items()}


class TestTopOfALargerCollection:
    async def test_the_best_documents_and_scores_are_those_of_scoring_every_document(self, store: Store) -> None:
        """The commonest words are looked up only for the documents still in reach (MaxScore over the IDF
        floor): the top must still be exactly what scoring every matching document gives."""
        rng = random.Random(5)
        common = ["plan", "price", "support", "account", "order", "delivery"]
        texts = {f"d{i}": " ".join([*rng.choices(common, k=rng.randint(1, 12)), *(f"filler{n}" for n in range(i % 9)),
                                    *(["premium"] if rng.random() < 0.1 else [])])
                 for i in range(70)}
        c = await collection(store)
        await write(store, c, *(DocumentWrite(name=name, contents=text) for name, text in texts.items()))
        await index_all(store)
        query = query_terms("premium plan price support account order delivery")
        analysed = {name: terms(text) for name, text in texts.items()}
        lengths = {name: len(words) + 1 for name, words in analysed.items()}
        average = sum(lengths.values()) / len(lengths)
        frequencies = [sum(1 for words in analysed.values() if term in words) for term in query]
        weight = bm25.query_weight(len(texts), frequencies)
        every = {name: bm25.normalise(sum(
            bm25.term_score(bm25.idf(len(texts), df), words.count(term), lengths[name], average)
            for term, df in zip(query, frequencies, strict=True) if term in words), weight)
            for name, words in analysed.items() if any(term in words for term in query)}
        expected = sorted(every.items(), key=lambda pair: -pair[1])[:5]
        assert expected[4][1] > sorted(every.values(), reverse=True)[5]  # no tie at the edge of the top 5
        hits = await store.documents.search([c], query, limit=5)
        names = {d.id: d.name for d in await store.documents.many(ALICE, [h.document_id for h in hits])}
        assert [round(h.score, 9) for h in hits] == [round(score, 9) for _, score in expected]  # best first
        assert sorted((names[h.document_id], round(h.score, 9)) for h in hits) == sorted(
            (name, round(score, 9)) for name, score in expected)
