"""Semantic and hybrid retrieval through the HTTP API, with the local model (the `make run` default) and
with an OpenAI-compatible `/embeddings` endpoint (the fake LLM) reached through the openai SDK and egress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from botline.api.state import SERVICES
from botline.config import KnowledgeSettings
from botline.domain.clock import FrozenClock
from botline.domain.knowledge import Collection, DocumentWrite, IndexState, LabelChanges
from botline.knowledge.indexer import Indexer
from botline.knowledge.local_embeddings import LocalEmbedder, model_id
from botline.knowledge.search import KnowledgeSearch, SearchRequest
from botline.knowledge.semantic import Semantic, SemanticSearch
from botline.metrics import Metrics
from botline.store import Store
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.knowledge.test_retrieval_turns import chat
from tests.support.egress import LOOPBACK_ALLOWED
from tests.support.knowledge import create_collection, import_jsonl, jsonl, names, query, wait_indexed
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server

ACCOUNT = "account-semantic"
CLOCK = FrozenClock(datetime(2026, 12, 1, tzinfo=UTC))
LOCAL = {"embeddings": {"provider": "local", "threads": 1}}
GARAGE = {
    "tyres": "To change a flat tyre on your car, loosen the nuts, lift it with the jack and fit the spare.",
    "refunds": "Refunds are paid back to the original card within 14 days of the return.",
    "hours": "The shop opens at 9 am and closes at 6 pm from Monday to Saturday.",
    "parcels": "Parcels are shipped by courier and tracked with the code sent by e-mail.",
}
SYNONYM_QUESTION = "automobile wheel replacement"
"""Shares no word (nor stem) with any GARAGE text: only its meaning finds `tyres`."""


def fake_embeddings(fake: FakeLLM, **extra: Any) -> dict[str, Any]:
    return {"embeddings": {"provider": "openai", "base_address": fake.base_url, "api_key": UPSTREAM_KEY,
                           "model": "fake-embed", **extra}}


@pytest.fixture(params=["sqlite", "redis"])
async def semantic_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A botline with the local model, on SQLite, then on Redis."""
    if request.param == "sqlite":
        async with running_server(make_settings(f"sqlite:///{tmp_path / 'botline.db'}", knowledge=LOCAL)) as server:
            yield server
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    try:
        async with running_server(make_settings(url, storage={"url": url, "redis_prefix": prefix},
                                                knowledge=LOCAL)) as server:
            yield server
    finally:
        await delete_prefix(url, prefix)


async def garage(server: RunningServer) -> str:
    collection_id = await create_collection(server, "Garage")
    lines = jsonl(*({"docId": n, "text": t} for n, t in GARAGE.items()))
    status, body = await import_jsonl(server, collection_id, lines)
    assert status == 200, body
    assert (await wait_indexed(server, collection_id))["indexed"] == len(GARAGE)
    return collection_id


async def test_a_synonym_finds_what_lexical_search_misses(semantic_server: RunningServer, tmp_path: Path) -> None:
    c = await garage(semantic_server)
    results = await query(semantic_server, [c], SYNONYM_QUESTION, top=1)
    assert [r["documentName"] for r in results] == ["tyres"] and 0.2 < results[0]["score"] <= 1
    settings = make_settings(f"sqlite:///{tmp_path / 'lexical.db'}")  # embeddings off: lexical only
    async with running_server(settings) as lexical:
        assert await names(lexical, [await garage(lexical)], SYNONYM_QUESTION) == []


async def test_hybrid_query_unites_both_retrievers(semantic_server: RunningServer) -> None:
    c = await garage(semantic_server)
    results = await query(semantic_server, [c], "refunds", SYNONYM_QUESTION, top=5, reranker="none")
    found = [r["documentName"] for r in results]
    assert found[0] == "refunds" and "tyres" in found  # the first term's lexical hit leads in retrieval order
    assert all(0 < r["score"] <= 1 for r in results)
    fused = [r["documentName"] for r in await query(semantic_server, [c], "refunds", SYNONYM_QUESTION, top=2)]
    assert set(fused) == {"refunds", "tyres"}  # smart (RRF): each term's best document
    assert await names(semantic_server, [c], SYNONYM_QUESTION, minScore=0.99) == []  # minScore applies to both


async def test_a_deleted_or_replaced_document_is_never_returned(semantic_server: RunningServer) -> None:
    c = await garage(semantic_server)
    assert "tyres" in await names(semantic_server, [c], SYNONYM_QUESTION)
    status, _ = await semantic_server.call("PUT", f"/api/v1/collections/{c}/documents", json={
        "name": "tyres", "contents": "Gift cards never expire."})
    assert status == 200
    assert "tyres" not in await names(semantic_server, [c], SYNONYM_QUESTION)  # replaced: its old vector is ignored
    await wait_indexed(semantic_server, c)
    [hours] = [r for r in await query(semantic_server, [c], "opening time", top=5) if r["documentName"] == "hours"]
    status, _ = await semantic_server.call("DELETE", f"/api/v1/collections/{c}/documents/{hours['documentId']}")
    assert status == 200
    assert "hours" not in await names(semantic_server, [c], "opening time")


async def test_a_document_deleted_behind_the_index_is_not_returned_and_its_vector_goes(store: Store) -> None:
    """A sync import deletes documents without naming them to the vector index: the search checks every
    vector hit against the Store, drops the deleted document and removes its vector."""
    embedder = LocalEmbedder(batch_size=8, threads=1)
    semantic = Semantic(embedder, store.vectors)
    collection = Collection(account_id=ACCOUNT, name="garage")
    await store.collections.create(collection)
    await store.documents.write(ACCOUNT, collection.id, [DocumentWrite(name=n, contents=t) for n, t in GARAGE.items()],
                                now=CLOCK.now(), labels=LabelChanges.SKIP)
    indexer = Indexer(store, CLOCK, KnowledgeSettings(), Metrics(), semantic=semantic)
    while await indexer.run_once():
        pass
    search = KnowledgeSearch(store, SemanticSearch(store, semantic))
    request = SearchRequest(account_id=ACCOUNT, collection_ids=[collection.id], terms=[SYNONYM_QUESTION], top=1)
    [found] = await search.search(request)
    assert found.document.name == "tyres" and found.document.state is IndexState.INDEXED
    await store.documents.delete(ACCOUNT, collection.id, found.document.id)
    assert "tyres" not in [r.document.name for r in await search.search(request)]
    assert await store.vectors.count(collection.id, embedder.model_id) == len(GARAGE) - 1
    await embedder.close()


async def test_changing_the_model_re_embeds_every_document(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """Indexed with the endpoint's vectors, restarted on the local model: the collection is queued again
    and its documents get local vectors (the endpoint's bag of words knows no synonyms; the model does)."""
    url = f"sqlite:///{tmp_path / 'botline.db'}"
    async with running_server(make_settings(url, knowledge=fake_embeddings(fake_llm, dimensions=1024))) as server:
        c = await garage(server)
        assert await names(server, [c], SYNONYM_QUESTION) == []
    async with running_server(make_settings(url, knowledge=LOCAL)) as server:
        state = await wait_indexed(server, c)
        assert state["indexed"] == len(GARAGE)
        assert (await names(server, [c], SYNONYM_QUESTION))[0] == "tyres"
        assert await server.app[SERVICES].store.vectors.count(c, model_id(quantized=False)) == len(GARAGE)


async def test_vectors_only_embeds_every_document_again(fake_llm: FakeLLM, tmp_path: Path) -> None:
    async with running_server(make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                                            knowledge=fake_embeddings(fake_llm))) as server:
        c = await garage(server)
        embedded = [r.body["input"] for r in fake_llm.requests if r.path.endswith("/embeddings")]
        assert sorted(t for batch in embedded for t in batch) == sorted(GARAGE.values())
        fake_llm.requests.clear()
        status, body = await server.call("DELETE", f"/api/v1/collections/{c}/vectors-only")
        assert status == 200 and body["enqueued"] == len(GARAGE)
        await wait_indexed(server, c)
        again = [t for r in fake_llm.requests if r.path.endswith("/embeddings") for t in r.body["input"]]
        assert sorted(again) == sorted(GARAGE.values())


async def test_an_openai_compatible_endpoint_gives_the_vectors(fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.synonyms = {"automobile": "car", "wheel": "tyre", "replacement": "change"}
    async with running_server(make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                                            knowledge=fake_embeddings(fake_llm, dimensions=64))) as server:
        c = await garage(server)
        assert (await names(server, [c], SYNONYM_QUESTION))[0] == "tyres"
        calls = [r for r in fake_llm.requests if r.path.endswith("/embeddings")]
        assert calls and all(r.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}" for r in calls)
        assert {r.body["model"] for r in calls} == {"fake-embed"} and {r.body["dimensions"] for r in calls} == {64}


async def test_the_endpoints_answer_is_capped_like_every_model_response(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """The SDK's transport is the egress layer's: an answer past security.egress.model_response_max_bytes
    fails the embedding, and the document says why instead of staying Queued."""
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                             knowledge={**fake_embeddings(fake_llm, dimensions=2048), "index_max_attempts": 1},
                             security={"egress": {"model_response_max_bytes": 4096, "allow": LOOPBACK_ALLOWED}})
    async with running_server(settings) as server:
        c = await create_collection(server, "Garage")
        await import_jsonl(server, c, jsonl({"docId": "tyres", "text": GARAGE["tyres"]}))
        state = await wait_indexed(server, c)
        assert state["cancelled"] == 1
        status, page = await server.call("GET", f"/api/v1/collections/{c}/documents")
        assert status == 200 and page[0]["indexState"] == "Cancelled"
        status, document = await server.call("GET", f"/api/v1/collections/{c}/documents/{page[0]['id']}")
        assert status == 200 and document["indexError"].startswith("embedding: fake-embed")


async def test_query_embeddings_of_a_turn_count_on_the_gateway(fake_llm: FakeLLM, tmp_path: Path) -> None:
    async with running_server(make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                                            knowledge=fake_embeddings(fake_llm))) as server:
        c = await garage(server)
        gateway_id = await create_gateway(server, fake_llm, knowledgeCollections=[c])
        await chat(server, gateway_id, ("user", "When does the shop open?"))
        status, stats = await server.call("GET", f"/api/v1/ai-gateways/{gateway_id}/stats")
        assert status == 200 and stats["requests"] == 2  # the turn and its query embedding
        assert stats["inputTokens"] >= len(["When", "does", "the", "shop", "open"])


async def test_the_qdrant_index_serves_the_same_queries(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """`vector_store: qdrant` (qdrant-client's local mode here) behind /api/v1/query, deletes included."""
    fake_llm.synonyms = {"automobile": "car", "wheel": "tyre", "replacement": "change"}
    knowledge = {**fake_embeddings(fake_llm, dimensions=64), "vector_store": "qdrant", "qdrant": {"path": ":memory:"}}
    async with running_server(make_settings(f"sqlite:///{tmp_path / 'botline.db'}", knowledge=knowledge)) as server:
        c = await garage(server)
        [tyres] = await query(server, [c], SYNONYM_QUESTION, top=1)
        assert tyres["documentName"] == "tyres"
        status, _ = await server.call("DELETE", f"/api/v1/collections/{c}/documents/{tyres['documentId']}")
        assert status == 200
        assert "tyres" not in await names(server, [c], SYNONYM_QUESTION)
