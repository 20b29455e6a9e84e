"""Workers in real turns: a loopback worker (speaking AIVAX's worker wire format) sees each turn and tool
call, and each of its actions shows in what the fake model receives; failures change nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import orjson
import pytest

from tests.emulators.fake_llm import FakeLLM, RecordedRequest, Reply, ToolCall
from tests.memory.helpers import admin_id, offered, say, store_of, tool_results
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public
from tests.tools.mcp_server import McpTestServer

WORKER_TIMEOUT = 0.3
ACTION = "application/json+worker-action"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"tools": {"worker_timeout_seconds": WORKER_TIMEOUT}}


@pytest.fixture
async def site() -> AsyncIterator[CallbackServer]:
    async with CallbackServer() as server:
        yield server


def rewrites(*items: dict[str, Any]) -> Answer:
    body = {"type": "message.received.response", "data": {"rewrites": list(items)}}
    return Answer(body=orjson.dumps(body), content_type=ACTION)


def replaced(result: str, *messages: dict[str, Any]) -> Answer:
    body = {"type": "tool.called.response", "data": {"result": result, "messages": list(messages)}}
    return Answer(body=orjson.dumps(body), content_type=ACTION)


def lookup(callback_url: str) -> dict[str, Any]:
    return {"name": "lookup", "description": "Looks an order up by id.", "callbackUrl": callback_url,
            "contentFormat": {"type": "object", "properties": {"id": {"type": "string"}}}}


async def session(server: RunningServer, fake: FakeLLM, site: CallbackServer, *worker: Answer,
                  metadata: dict[str, str] | None = None, **gateway: Any) -> str:
    url = site.answer("/worker", *worker)
    client = await create_client(server, fake, gateway={"systemInstruction": "Be brief.",
                                                        "workerScriptSource": url, **gateway})
    opened = await open_session(server, client, tag="user-1", metadata=metadata or {})
    return str(opened["accessKey"])


def system_of(request: RecordedRequest) -> str:
    first = request.body["messages"][0]
    return str(first["content"]) if first["role"] == "system" else ""


def contents(request: RecordedRequest) -> list[Any]:
    return [m.get("content") for m in request.body["messages"] if m["role"] != "system"]


async def test_the_worker_sees_the_turn_with_a_nonce_that_verifies(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    key = await session(server, fake_llm, site, Answer(body="fine"), metadata={"plan": "gold"})
    fake_llm.script(Reply(text="Hello."))
    await say(server, key, "Hi")
    [hit] = site.received_at("/worker")
    body = hit.json()
    assert body["gatewayId"] and body["moment"].endswith("+00:00")
    assert body["event"]["name"] == "message.received"
    data = body["event"]["data"]
    assert data["messages"][0]["role"] == "system" and "Be brief." in data["messages"][0]["content"]
    assert data["messages"][-1] == {"role": "user", "content": "Hi"}
    assert (data["origin"], data["externalUserId"], data["metadata"]) == ("WebChatClient", "user-1", {"plan": "gold"})
    account = await store_of(server).accounts.get(await admin_id(server))
    assert account is not None
    assert bcrypt.checkpw(account.salt.encode(), hit.headers["X-Request-Nonce"].encode())
    assert "Be brief." in system_of(fake_llm.requests[-1])  # a plain 2xx changes nothing


async def test_add_actions_change_the_upstream_request(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    async with McpTestServer() as mcp:
        key = await session(server, fake_llm, site, rewrites(
            {"type": "add-system", "message": "The user is a gold customer."},
            {"type": "add-message", "message": {"role": "user", "content": "(sent from the mobile app)"}},
            {"type": "add-tool", "tool": {"type": "function", "function": {
                "name": "crm_note", "description": "Notes something", "parameters": {"type": "object"}}}},
            {"type": "add-protocol-tool", "tool": lookup(site.url + "/lookup")},
            {"type": "add-mcp-source", "source": {"name": "calc", "url": mcp.url}},
        ))
        fake_llm.script(Reply(text="Hello."))
        await say(server, key, "Hi")
    request = fake_llm.requests[-1]
    assert system_of(request).splitlines()[-1] == "The user is a gold customer."
    assert contents(request)[-2:] == ["Hi", "(sent from the mobile app)"]
    assert {"crm_note", "lookup", "calc__add"} <= offered(request)


async def test_clear_and_remove_change_the_upstream_request(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    key = await session(server, fake_llm, site, Answer(body="fine"), protocolFunctions=[lookup(site.url + "/x")])
    fake_llm.script(Reply(text="One."), Reply(text="Two."))
    await say(server, key, "First")
    site.answer("/worker", rewrites({"type": "remove-message", "index": 1}, {"type": "clear", "argument": "tools"}))
    await say(server, key, "Second")
    request = fake_llm.requests[-1]
    assert contents(request) == ["One.", "Second"] and offered(request) == set()
    site.answer("/worker", rewrites({"type": "clear", "argument": "messages"},
                                    {"type": "add-message", "message": {"role": "user", "content": "Replaced"}}))
    fake_llm.script(Reply(text="Three."))
    await say(server, key, "Third")
    assert contents(fake_llm.requests[-1]) == ["Replaced"] and "Be brief." in system_of(fake_llm.requests[-1])
    site.answer("/worker", rewrites({"type": "clear", "argument": "system"}))
    await say(server, key, "Fourth")
    assert fake_llm.requests[-1].body["messages"][0]["role"] != "system"
    site.answer("/worker", rewrites({"type": "clear", "argument": "all"}, {"type": "add-system", "message": "Only."}))
    await say(server, key, "Fifth")
    assert fake_llm.requests[-1].body["messages"] == [{"role": "system", "content": "Only."}]


async def test_clear_skills_removes_the_skill_list_and_read_skill(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    status, skill = await server.call("POST", "/api/v1/skills", json={
        "slug": "writer", "description": "Writes", "instructions": "Write well.", "options": {}})
    assert status == 200, skill
    key = await session(server, fake_llm, site, Answer(body="fine"), skills=[skill["id"]])
    fake_llm.script(Reply(text="A."), Reply(text="B."))
    await say(server, key, "Hi")
    assert "<available_skills>" in system_of(fake_llm.requests[-1]) and "read_skill" in offered(fake_llm.requests[-1])
    site.answer("/worker", rewrites({"type": "clear", "argument": "skills"}))
    await say(server, key, "Again")
    assert "<available_skills>" not in system_of(fake_llm.requests[-1])
    assert "read_skill" not in offered(fake_llm.requests[-1]) and "Be brief." in system_of(fake_llm.requests[-1])


async def test_tool_called_can_replace_a_result_and_clear_meta_hides_the_metadata(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    site.answer("/lookup", Answer(body="from the callback"))
    key = await session(
        server, fake_llm, site, Answer(body="fine"), replaced("Order A1 ships tomorrow.",
                                                              {"role": "user", "content": "(worker note)"}),
        rewrites({"type": "clear", "argument": "meta"}), Answer(body="run it"),
        metadata={"plan": "gold"}, protocolFunctions=[lookup(site.url + "/lookup")],
    )
    fake_llm.script(Reply(tool_calls=[ToolCall("lookup", {"id": "A1"})]), Reply(text="Tomorrow."))
    await say(server, key, "Where is A1?")
    assert tool_results(fake_llm.requests[-1]) == ["Order A1 ships tomorrow."]
    assert contents(fake_llm.requests[-1])[-1] == "(worker note)"
    assert site.received_at("/lookup") == []
    called = site.received_at("/worker")[1].json()["event"]
    assert called == {"name": "tool.called", "data": {
        "toolName": "lookup", "toolArguments": {"id": "A1"}, "origin": "WebChatClient", "externalUserId": "user-1",
        "metadata": {"plan": "gold"}, "conversationToken": called["data"]["conversationToken"]}}
    fake_llm.script(Reply(tool_calls=[ToolCall("lookup", {"id": "A2"})]), Reply(text="Done."))
    await say(server, key, "And A2?")  # meta cleared, then the worker lets the tool run
    [callback] = site.received_at("/lookup")
    assert callback.json()["context"]["metadata"] == {}
    assert site.received_at("/worker")[-1].json()["event"]["data"]["metadata"] == {}
    assert tool_results(fake_llm.requests[-1])[-1] == "from the callback"


async def test_a_refusal_blocks_the_tool_or_stops_the_message(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    key = await session(server, fake_llm, site, Answer(body="fine"), Answer(status=403, body="no"),
                        protocolFunctions=[lookup(site.url + "/lookup")])
    fake_llm.script(Reply(tool_calls=[ToolCall("lookup", {"id": "A1"})]), Reply(text="Sorry."))
    await say(server, key, "Where is A1?")
    assert "blocked by policy" in tool_results(fake_llm.requests[-1])[0] and site.received_at("/lookup") == []
    calls = len(fake_llm.requests)
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt("Hello"))
    assert status == 403 and answer["message"] == "This message was stopped by the assistant's policy."
    assert len(fake_llm.requests) == calls


@pytest.mark.parametrize("failure", [Answer(status=500, body="boom"), Answer(stall=True),
                                     Answer(body=b"{not json", content_type=ACTION)])
async def test_a_failing_worker_leaves_the_turn_unchanged(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer, failure: Answer
) -> None:
    site.answer("/lookup", Answer(body="from the callback"))
    key = await session(server, fake_llm, site, failure, protocolFunctions=[lookup(site.url + "/lookup")])
    fake_llm.script(Reply(tool_calls=[ToolCall("lookup", {"id": "A1"})]), Reply(text="Tomorrow."))
    started = time.monotonic()
    answer = await say(server, key, "Where is A1?")
    assert time.monotonic() - started < 2 * WORKER_TIMEOUT + 2
    assert "Tomorrow." in orjson.dumps(answer).decode()
    request = fake_llm.requests[-1]
    assert "Be brief." in system_of(request) and contents(request)[0] == "Where is A1?"
    assert tool_results(request) == ["from the callback"] and len(site.received_at("/worker")) == 2


async def test_fail_closed_stops_the_message_when_the_worker_fails(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    key = await session(server, fake_llm, site, Answer(status=502, body="down"), flags=["WorkerFailClosed"])
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt("Hello"))
    assert status == 403 and "stopped" in answer["message"] and fake_llm.requests == []


async def test_the_worker_must_be_an_http_url(server: RunningServer, fake_llm: FakeLLM) -> None:
    from tests.conftest import gateway_body

    status, answer = await server.call("POST", "/api/v1/ai-gateways",
                                       json=gateway_body(fake_llm, workerScriptSource="export default {}"))
    assert status == 400 and "workerScriptSource" in answer["message"]


async def test_v1_chat_completions_goes_through_the_worker(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    from tests.conftest import create_gateway

    gateway_id = await create_gateway(server, fake_llm, workerScriptSource=site.answer(
        "/worker", rewrites({"type": "add-system", "message": "Reply in French."}), Answer(status=403, body="no")))
    fake_llm.script(Reply(text="Bonjour."))
    body = {"model": gateway_id, "messages": [{"role": "user", "content": "Hi"}], "user": "api-user"}
    status, answer = await server.call("POST", "/v1/chat/completions", json=body)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Bonjour."
    assert system_of(fake_llm.requests[-1]).endswith("Reply in French.")
    assert site.received_at("/worker")[0].json()["event"]["data"]["origin"] == "OpenAiCompatible"
    status, answer = await server.call("POST", "/v1/chat/completions", json=body)
    assert status == 403 and "stopped" in str(answer) and len(fake_llm.requests) == 1
