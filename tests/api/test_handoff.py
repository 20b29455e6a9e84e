"""Human handoff through the web chat and the management API: the model's handoff_to_human tool, the
signed notification webhook, agents answering through the API, and giving the chat back."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer, Received
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

HANDOFF_TEXT = "A person from our team will answer you here shortly."


@pytest.fixture
async def site() -> AsyncIterator[CallbackServer]:
    async with CallbackServer() as server:
        yield server


async def hooks(site: CallbackServer, count: int, timeout: float = 5.0) -> list[Received]:
    async with asyncio.timeout(timeout):
        while len(site.received_at("/handoff")) < count:
            await asyncio.sleep(0.02)
    return site.received_at("/handoff")


def sessions_path(client_id: str, session_id: str, suffix: str = "") -> str:
    return f"/api/v1/web-chat-client/{client_id}/sessions/{session_id}{suffix}"


async def handoff_client(server: RunningServer, fake_llm: FakeLLM, site: CallbackServer, **handoff: Any) -> str:
    hook = site.answer("/handoff", Answer(status=204, body=b""))
    return await create_client(server, fake_llm, handoff={
        "enabled": True, "userMessage": HANDOFF_TEXT, "webhookUrl": hook, **handoff})


async def test_the_model_hands_off_once_and_the_chat_waits_for_a_person_until_resumed(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    client_id = await handoff_client(server, fake_llm, site)
    chat = await open_session(server, client_id, tag="customer-9")
    fake_llm.script(Reply(tool_calls=[ToolCall("handoff_to_human", {"reason": "wants a refund over the limit"})]))

    status, answer = await server.call("POST", public(chat["accessKey"], "/prompt"), json=prompt("I want a refund"))
    assert status == 200 and answer["completionText"] == HANDOFF_TEXT, answer
    offered = [t["function"]["name"] for t in fake_llm.requests[0].body["tools"]]
    assert "handoff_to_human" in offered
    assert len(fake_llm.requests) == 1  # the tool ended the turn: the model was not asked to write more

    [hook] = await hooks(site, 1)
    _, keys = await server.call("GET", "/api/v1/accounts/api-key")
    timestamp = hook.headers["X-Botline-Timestamp"]
    expected = hmac.new(keys["salt"].encode(), f"{timestamp}.".encode() + hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["X-Botline-Signature"] == f"sha256={expected}"
    event = hook.json()
    assert (event["event"], event["trigger"], event["reason"], event["externalUserId"]) == (
        "handoff.started", "model", "wants a refund over the limit", "customer-9")
    assert event["transcriptUrl"].endswith(public(chat["accessKey"], "/transcript.json"))

    status, later = await server.call("POST", public(chat["accessKey"], "/prompt"), json=prompt("hello?"))
    assert (status, later["completionText"], later["handedOff"]) == (200, "", True)
    assert len(fake_llm.requests) == 1
    [_, message_hook] = await hooks(site, 2)
    assert (message_hook.json()["event"], message_hook.json()["text"]) == ("handoff.message", "hello?")

    _, listed = await server.call("GET", f"/api/v1/web-chat-client/{client_id}/sessions")
    assert (listed[0]["handoff"]["state"], listed[0]["handoff"]["by"]) == ("human", "model")

    status, resumed = await server.call("POST", sessions_path(client_id, chat["sessionId"], "/resume"))
    assert status == 200 and resumed["handoff"]["state"] == "bot", resumed
    assert (await hooks(site, 3))[2].json()["event"] == "handoff.ended"
    status, back = await server.call("POST", public(chat["accessKey"], "/prompt"), json=prompt("still there?"))
    assert back["completionText"] == "echo: still there?"
    seen = [(m["role"], m["content"]) for m in fake_llm.requests[-1].body["messages"] if m["role"] != "system"]
    assert seen[-3:] == [("assistant", HANDOFF_TEXT), ("user", "hello?"), ("user", "still there?")]


async def test_an_agent_answers_through_the_api_and_the_page_shows_who(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    client_id = await handoff_client(server, fake_llm, site)
    chat = await open_session(server, client_id)
    await server.call("POST", public(chat["accessKey"], "/prompt"), json=prompt("my parcel is damaged"))

    status, sent = await server.call("POST", sessions_path(client_id, chat["sessionId"], "/messages"),
                                     json={"content": "Sorry about that! Sending a new one today.", "agent": "Paula"})
    assert status == 200 and sent["handoff"]["state"] == "human", sent
    assert sent["handoff"]["agent"] == "Paula"

    _, page = await server.call("GET", public(chat["accessKey"]))
    assert page["messages"][-1] == {"role": "assistant", "content": "Sorry about that! Sending a new one today.",
                                    "message_id": sent["messageId"], "agent": "Paula"}
    _, transcript = await server.call("GET", public(chat["accessKey"], "/transcript.json"))
    assert transcript["messages"][-1]["agent"] == "Paula" and transcript["handoff"]["state"] == "human"
    status, answer = await server.call("POST", public(chat["accessKey"], "/prompt"), json=prompt("thank you!"))
    assert answer["handedOff"] is True and len(fake_llm.requests) == 1


async def test_bad_handoff_requests_name_the_field_and_change_nothing(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    client_id = await handoff_client(server, fake_llm, site)
    chat = await open_session(server, client_id)
    status, body = await server.call("POST", sessions_path(client_id, chat["sessionId"], "/handoff"),
                                     json={"minutes": 0})
    assert status == 400 and "minutes" in body["message"], body
    status, body = await server.call("POST", sessions_path(client_id, chat["sessionId"], "/messages"),
                                     json={"content": ""})
    assert status == 400 and "content" in body["message"], body
    status, body = await server.call("POST", sessions_path(client_id, "no-such-session", "/handoff"))
    assert status == 404, body
    _, listed = await server.call("GET", f"/api/v1/web-chat-client/{client_id}/sessions")
    assert listed[0]["handoff"]["state"] == "bot"
