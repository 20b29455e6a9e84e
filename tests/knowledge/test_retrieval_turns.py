"""Retrieval inside turns, through /v1 and the fake LLM: injection, the query strategies, the
QueryFunction tool and the aivax://query-collection function."""

from __future__ import annotations

from typing import Any

import openai

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.knowledge.corpora import ENGLISH
from tests.support.knowledge import create_collection, import_jsonl, jsonl, wait_indexed
from tests.support.server import RunningServer

CONTEXT = "These documents are ACME's customer support FAQ."


async def faq(server: RunningServer) -> str:
    collection_id = await create_collection(server, "FAQ", context=CONTEXT)
    await import_jsonl(server, collection_id, jsonl(*({"docId": n, "text": t} for n, t in ENGLISH.items())))
    await wait_indexed(server, collection_id)
    return collection_id


async def chat(server: RunningServer, gateway_id: str, *messages: tuple[str, str]) -> dict[str, Any]:
    status, body = await server.call("POST", "/v1/chat/completions", json={
        "model": gateway_id, "messages": [{"role": role, "content": text} for role, text in messages]})
    assert status == 200, body
    return dict(body)


def last_user(request_body: dict[str, Any]) -> str:
    return str([m for m in request_body["messages"] if m["role"] == "user"][-1]["content"])


async def test_found_documents_lead_the_last_user_message(server: RunningServer, fake_llm: FakeLLM) -> None:
    c = await faq(server)
    gateway_id = await create_gateway(server, fake_llm, knowledgeCollections=[c], knowledgeBaseMaximumResults=2)
    answer = await chat(server, gateway_id, ("user", "How long does shipping take?"))
    upstream = fake_llm.requests[-1].body
    text = last_user(upstream)
    assert text.startswith("<knowledge>") and ENGLISH["shipping"] in text
    assert text.endswith("How long does shipping take?") and text.count("<document ") <= 2
    assert CONTEXT in upstream["messages"][0]["content"]
    assert answer["knowledge_documents"][0]["name"] == "shipping" and answer["knowledge_documents"][0]["score"] > 0


async def test_the_openai_sdk_reads_the_documents_used_streamed_or_not(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    c = await faq(server)
    gateway_id = await create_gateway(server, fake_llm, knowledgeCollections=[c], knowledgeBaseMaximumResults=2)
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    question = [{"role": "user", "content": "How long does shipping take?"}]
    try:
        completion = await client.chat.completions.create(model=gateway_id, messages=question)  # type: ignore[arg-type]
        whole = (completion.model_extra or {})["knowledge_documents"]
        stream = await client.chat.completions.create(model=gateway_id, messages=question,  # type: ignore[arg-type]
                                                      stream=True, stream_options={"include_usage": True})
        frames = [chunk async for chunk in stream]
    finally:
        await client.close()
    assert whole[0]["name"] == "shipping" and whole[0]["collectionId"] == c and 0 < whole[0]["score"] <= 1
    [documents_frame] = [f for f in frames if (f.model_extra or {}).get("knowledge_documents")]
    assert documents_frame.choices == [] and documents_frame.model_extra is not None
    assert documents_frame.model_extra["knowledge_documents"] == whole
    order = frames.index(documents_frame)
    assert frames[order - 1].choices[0].finish_reason == "stop" and frames[order + 1].usage is not None
    streamed = "".join(f.choices[0].delta.content or "" for f in frames if f.choices)
    assert streamed == completion.choices[0].message.content


async def test_nothing_is_injected_when_nothing_matches(server: RunningServer, fake_llm: FakeLLM) -> None:
    c = await faq(server)
    gateway_id = await create_gateway(server, fake_llm, knowledgeCollections=[c])
    answer = await chat(server, gateway_id, ("user", "Hello there"))
    assert last_user(fake_llm.requests[-1].body) == "Hello there" and "knowledge_documents" not in answer


async def test_concatenate_searches_the_last_user_messages_together(server: RunningServer, fake_llm: FakeLLM) -> None:
    c = await faq(server)
    history = [("user", "I need help with my password"), ("assistant", "Sure."), ("user", "how do I do it?")]
    plain = await create_gateway(server, fake_llm, name="Plain", knowledgeCollections=[c])
    await chat(server, plain, *history)
    assert "<knowledge>" not in last_user(fake_llm.requests[-1].body)
    concatenated = await create_gateway(server, fake_llm, name="Concat", knowledgeCollections=[c],
                                        queryStrategy="Concatenate",
                                        queryStrategyParameters={"concatenateContextSize": 2})
    await chat(server, concatenated, *history)
    assert ENGLISH["password"] in last_user(fake_llm.requests[-1].body)


async def test_user_rewrite_resolves_a_follow_up_question(server: RunningServer, fake_llm: FakeLLM) -> None:
    c = await faq(server)
    gateway_id = await create_gateway(server, fake_llm, knowledgeCollections=[c], queryStrategy="UserRewrite",
                                      queryStrategyParameters={"rewriteContextSize": 2})
    fake_llm.script(Reply(text="Business plan monthly price\n"), Reply(text="$45 per seat."))
    await chat(server, gateway_id, ("user", "Tell me about the Business plan"), ("assistant", "It is for teams."),
               ("user", "and what is it per seat?"))
    rewrite, turn = fake_llm.requests[-2].body, fake_llm.requests[-1].body
    assert "search queries" in rewrite["messages"][0]["content"]
    assert "Tell me about the Business plan" in rewrite["messages"][1]["content"]
    assert "It is for teams." not in rewrite["messages"][1]["content"]  # UserRewrite reads user messages only
    assert ENGLISH["pricing"] in last_user(turn)
    status, stats = await server.call("GET", f"/api/v1/ai-gateways/{gateway_id}/stats")
    assert status == 200 and stats["requests"] == 2  # the rewrite call is counted on the gateway


async def test_query_function_gives_the_model_a_search_tool(server: RunningServer, fake_llm: FakeLLM) -> None:
    c = await faq(server)
    gateway_id = await create_gateway(server, fake_llm, knowledgeCollections=[c], queryStrategy="QueryFunction")
    fake_llm.script(Reply(tool_calls=[ToolCall("knowledge_search", {"query": "do gift cards expire"})]),
                    Reply(text="They never expire."))
    answer = await chat(server, gateway_id, ("user", "Do gift cards expire?"))
    first, second = fake_llm.requests[-2].body, fake_llm.requests[-1].body
    assert last_user(first) == "Do gift cards expire?"
    assert "knowledge_search" in [t["function"]["name"] for t in first["tools"]]
    assert ENGLISH["gift-cards"] in second["messages"][-1]["content"] and second["messages"][-1]["role"] == "tool"
    assert answer["choices"][0]["message"]["content"] == "They never expire."


async def test_the_query_collection_function_searches_one_collection(server: RunningServer, fake_llm: FakeLLM) -> None:
    c = await faq(server)
    function = {"name": "faq_search", "description": "Searches the support FAQ for the user's question.",
                "callbackUrl": f"aivax://query-collection?collection-id={c}&top=1&min=0.1&refs",
                "contentFormat": {"type": "object", "properties": {"query": {"type": "string"}}}}
    gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[function])
    fake_llm.script(Reply(tool_calls=[ToolCall("faq_search", {"query": "API rate limit"})]), Reply(text="100/min."))
    await chat(server, gateway_id, ("user", "What is the API rate limit?"))
    tool_message = fake_llm.requests[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and ENGLISH["api"] in tool_message["content"]
    assert tool_message["content"].count("<document ") == 1
