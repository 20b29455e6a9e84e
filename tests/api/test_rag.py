"""POST /api/v1/query and /api/v1/answer through HTTP (each backend), /answer on the fake LLM."""

from __future__ import annotations

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.knowledge.corpora import ENGLISH
from tests.support.knowledge import create_collection, import_jsonl, jsonl, names, query, wait_indexed
from tests.support.server import RunningServer


async def english(server: RunningServer) -> str:
    collection_id = await create_collection(server, "Help")
    lines = [{"docId": name, "text": text} for name, text in ENGLISH.items()]
    lines.append({"docId": "returns-form", "text": "Print the returns label from your order page.", "__ref": "ret"})
    lines[0]["__ref"] = "ret"
    assert (await import_jsonl(server, collection_id, jsonl(*lines)))[0] == 200
    await wait_indexed(server, collection_id)
    return collection_id


async def test_query_answers_the_seed_shape_with_scores_between_0_and_1(kb_server: RunningServer) -> None:
    c = await english(kb_server)
    [first, *_] = await query(kb_server, [c], "How do I return an item?", includeReferences=True, top=2)
    assert first["documentName"] == "returns" and first["collectionId"] == c and 0 < first["score"] <= 1
    assert first["documentContent"] == ENGLISH["returns"] and first["metadata"] == {}
    assert [r["documentContent"] for r in first["referencedDocuments"]] == [
        "Print the returns label from your order page."]
    status, single = await kb_server.call("POST", "/api/v1/query", json={"term": "gift cards", "collections": [c]})
    assert status == 200 and single[0]["documentName"] == "gift-cards"


async def test_top_min_score_and_rerankers(kb_server: RunningServer) -> None:
    c = await english(kb_server)
    assert len(await query(kb_server, [c], "plan month shipping password", top=2, minScore=0.01)) == 2
    for reranker in ("lexical", "rrf", "none", "smart", "@aivax/reflex-v1"):
        found = await names(kb_server, [c], "gift cards", "reset password", reranker=reranker)
        assert set(found) >= {"gift-cards", "password"}, reranker
    assert await names(kb_server, [c], "gift cards in berlin", minScore=0.99) == []


async def test_bad_requests_name_the_field(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    cases = [
        ({"terms": ["x"], "collections": [c], "reranker": "magic"}, "reranker"),
        ({"terms": ["x"], "collections": [c], "top": 0}, "top"),
        ({"terms": ["x"], "collections": [c], "top": 129}, "top"),
        ({"terms": ["x"], "collections": [c], "minScore": 1.5}, "minScore"),
        ({"terms": [" "], "collections": [c]}, "terms"),
        ({"terms": ["x"], "collections": []}, "collections"),
        ({"terms": ["x" * 5000], "collections": [c]}, "terms"),
    ]
    for body, field in cases:
        status, answer = await kb_server.call("POST", "/api/v1/query", json=body)
        assert status == 400 and field in answer["message"], (body, answer)


async def test_answer_asks_the_accounts_gateway_with_the_documents_found(server: RunningServer,
                                                                          fake_llm: FakeLLM) -> None:
    c = await english(server)
    status, body = await server.call("POST", "/api/v1/answer", json={"terms": ["returns"], "collections": [c]})
    assert status == 409 and "gateway" in body["message"]
    await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="Within 30 days, for a full refund."))
    status, body = await server.call("POST", "/api/v1/answer",
                                     json={"terms": ["How do I return an item?"], "collections": [c]})
    assert status == 200 and body["answer"] == "Within 30 days, for a full refund."
    assert body["queryResults"][0]["documentName"] == "returns"
    prompt = fake_llm.requests[-1].body["messages"][-1]["content"]
    assert ENGLISH["returns"] in prompt and "How do I return an item?" in prompt
