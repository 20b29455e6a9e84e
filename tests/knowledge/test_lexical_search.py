"""Lexical retrieval quality on the Portuguese and English corpora (each backend): every question finds
its document in the top 3; accents, plural and singular forms still match; CJK text is searchable;
a deleted document is never returned."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from botline.config import KnowledgeSettings
from botline.domain.clock import FrozenClock
from botline.domain.knowledge import BrowseQuery, Collection, DocumentFilter, DocumentWrite, LabelChanges
from botline.knowledge.indexer import Indexer
from botline.knowledge.search import KnowledgeSearch, Reranker, SearchRequest
from botline.metrics import Metrics
from botline.store import Store
from tests.knowledge.corpora import ENGLISH, ENGLISH_QUESTIONS, PORTUGUESE, PORTUGUESE_QUESTIONS

ACCOUNT = "account-kb"
CLOCK = FrozenClock(datetime(2026, 12, 1, tzinfo=UTC))


async def indexed_collection(store: Store, corpus: dict[str, str]) -> str:
    collection = Collection(account_id=ACCOUNT, name="corpus")
    await store.collections.create(collection)
    writes = [DocumentWrite(name=name, contents=text) for name, text in corpus.items()]
    await store.documents.write(ACCOUNT, collection.id, writes, now=CLOCK.now(), labels=LabelChanges.SKIP)
    indexer = Indexer(store, CLOCK, KnowledgeSettings(), Metrics())
    while await indexer.run_once():
        pass
    return collection.id


async def top(store: Store, collection_id: str, question: str, n: int = 3, **options: object) -> list[str]:
    results = await KnowledgeSearch(store).search(SearchRequest(
        account_id=ACCOUNT, collection_ids=[collection_id], terms=[question], top=n, **options))  # type: ignore[arg-type]
    return [r.document.name for r in results]


@pytest.mark.parametrize(("corpus", "questions"), [(PORTUGUESE, PORTUGUESE_QUESTIONS), (ENGLISH, ENGLISH_QUESTIONS)],
                         ids=["portuguese", "english"])
async def test_every_question_finds_its_document_in_the_top_3(
    store: Store, corpus: dict[str, str], questions: dict[str, str],
) -> None:
    collection_id = await indexed_collection(store, corpus)
    misses = {q: found for q, expected in questions.items()
              if expected not in (found := await top(store, collection_id, q, min_score=0.05))}
    assert misses == {}


async def test_accents_and_plural_or_singular_forms_match(store: Store) -> None:
    collection_id = await indexed_collection(store, PORTUGUESE)
    assert (await top(store, collection_id, "eletronico garantias", n=1)) == ["garantia"]
    assert (await top(store, collection_id, "cartoes de credito", n=1)) == ["pagamento"]
    assert (await top(store, collection_id, "Preço dos Planos", n=1)) == ["planos"]


async def test_english_plural_and_singular_forms_match(store: Store) -> None:
    collection_id = await indexed_collection(store, ENGLISH)
    assert (await top(store, collection_id, "gift card", n=1)) == ["gift-cards"]  # the text says "cards"
    assert (await top(store, collection_id, "invoice", n=1)) == ["invoice"]  # the text says "Invoices"
    assert (await top(store, collection_id, "device warranties", n=1)) == ["warranty"]


async def test_a_replaced_text_is_never_returned_only_the_new_one(store: Store) -> None:
    collection_id = await indexed_collection(store, ENGLISH)
    await store.documents.write(ACCOUNT, collection_id, [DocumentWrite(name="stores", contents="Visit us in Lisbon.")],
                                now=CLOCK.now(), labels=LabelChanges.SKIP)
    assert "stores" not in await top(store, collection_id, "London store", n=10, min_score=0.0)
    while await Indexer(store, CLOCK, KnowledgeSettings(), Metrics()).run_once():
        pass
    assert await top(store, collection_id, "Lisbon", n=10, min_score=0.0) == ["stores"]
    assert "stores" not in await top(store, collection_id, "London", n=10, min_score=0.0)


async def test_cjk_text_is_found_by_a_word_inside_a_longer_run(store: Store) -> None:
    collection_id = await indexed_collection(store, {"health": "健康保险的理赔流程需要三天", "other": "旅行保险"})
    assert await top(store, collection_id, "健康", min_score=0.01) == ["health"]
    assert await top(store, collection_id, "理赔", min_score=0.01) == ["health"]


async def test_several_terms_are_a_ranked_union_scored_by_the_best_term(store: Store) -> None:
    collection_id = await indexed_collection(store, ENGLISH)
    results = await KnowledgeSearch(store).search(SearchRequest(
        account_id=ACCOUNT, collection_ids=[collection_id], terms=["gift cards", "reset password"], top=5,
        reranker=Reranker.LEXICAL))
    assert {r.document.name for r in results[:2]} == {"gift-cards", "password"}
    assert all(0 < r.score <= 1 for r in results)


async def test_results_under_min_score_are_dropped(store: Store) -> None:
    collection_id = await indexed_collection(store, ENGLISH)
    results = await KnowledgeSearch(store).search(SearchRequest(
        account_id=ACCOUNT, collection_ids=[collection_id], terms=["password london"], top=10, min_score=0.0))
    assert [r.document.name for r in results] == ["password", "stores"]
    strict = await KnowledgeSearch(store).search(SearchRequest(
        account_id=ACCOUNT, collection_ids=[collection_id], terms=["password london"], top=10,
        min_score=(results[0].score + results[1].score) / 2))
    assert [r.document.name for r in strict] == ["password"]


async def test_a_deleted_document_is_never_returned(store: Store) -> None:
    collection_id = await indexed_collection(store, PORTUGUESE)
    [troca] = await store.documents.browse(ACCOUNT, collection_id, BrowseQuery(filter=DocumentFilter(name="troca")))
    await store.documents.delete(ACCOUNT, collection_id, troca.id)
    assert "troca" not in await top(store, collection_id, "Posso devolver um produto?", n=10, min_score=0.0)
