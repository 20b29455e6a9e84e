"""botline as a Chatwoot Agent Bot, end to end against the Chatwoot emulator: the bot answers pending
conversations only, a handoff opens the conversation for the human agents, resolving it gives it back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from botline.domain.handoff import Controller, HandoffTrigger
from tests.channels.conftest import QUIET_SECONDS, connect, save_integration, session_of, store_of
from tests.emulators.chatwoot import FakeChatwoot
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.server import RunningServer

SECRET = "bot-webhook-secret"
HANDOFF_TEXT = "Um atendente já vai falar com você."
TAG = "Chatwoot:1"


@pytest.fixture
async def chatwoot() -> AsyncIterator[FakeChatwoot]:
    async with FakeChatwoot(secret=SECRET, retry_scale=0.001) as fake:
        yield fake


def integration(chatwoot: FakeChatwoot, **changes: Any) -> dict[str, Any]:
    return {"baseUrl": chatwoot.url, "accountId": chatwoot.account_id, "accessToken": chatwoot.access_token,
            "webhookSecret": SECRET, **changes}


async def connected(server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot, **parameters: Any) -> str:
    channel = await connect(server, fake_llm, "Chatwoot", integration(chatwoot), **parameters)
    assert channel.saved["registration"] == {"mode": "manual", "error": None}
    chatwoot.webhook_url = channel.webhook_url
    return channel.client_id


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.02)


async def bot_says(chatwoot: FakeChatwoot, count: int, conversation: int = 1) -> list[str]:
    await until(lambda: len(chatwoot.bot_texts(conversation)) >= count)
    return chatwoot.bot_texts(conversation)


async def stays_silent(chatwoot: FakeChatwoot, count: int, conversation: int = 1) -> None:
    await asyncio.sleep(QUIET_SECONDS)
    assert len(chatwoot.bot_texts(conversation)) == count


async def test_the_bot_answers_while_pending_stays_silent_once_opened_and_answers_after_resolve(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    client_id = await connected(server, fake_llm, chatwoot)
    await chatwoot.contact_says("Where is my order?")
    assert await bot_says(chatwoot, 1) == ["echo: Where is my order?"]

    await chatwoot.agent_sets_status(1, "open")  # an agent takes the conversation in the dashboard
    await chatwoot.agent_says(1, "Hi Jane, Paula here: it ships tomorrow.")
    await chatwoot.contact_says("thanks!", conversation=1)
    await stays_silent(chatwoot, 1)
    session = await session_of(server, client_id, TAG)
    assert session is not None and session.handoff is not None
    assert (session.handoff.state, session.handoff.by) == (Controller.HUMAN, HandoffTrigger.CHATWOOT)

    await chatwoot.agent_sets_status(1, "resolved")
    await chatwoot.contact_says("one more thing: can I change the address?", conversation=1)
    said = await bot_says(chatwoot, 2)
    assert said[1] == "echo: one more thing: can I change the address?"
    context = [(m["role"], m["content"]) for m in fake_llm.requests[-1].body["messages"] if m["role"] != "system"]
    assert context[-3:] == [("assistant", "Hi Jane, Paula here: it ships tomorrow."), ("user", "thanks!"),
                            ("user", "one more thing: can I change the address?")]
    assert [t.body for t in chatwoot.toggles] == []  # every change came from Chatwoot: nothing told back


async def test_a_handoff_by_the_model_opens_the_conversation_for_the_agents(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    await connected(server, fake_llm, chatwoot, handoff={"enabled": True, "userMessage": HANDOFF_TEXT})
    fake_llm.script(Reply(tool_calls=[ToolCall("handoff_to_human", {"reason": "asks for a refund"})]))
    await chatwoot.contact_says("I want my money back")
    assert await bot_says(chatwoot, 1) == [HANDOFF_TEXT]
    await until(lambda: chatwoot.conversations[1].status == "open")
    assert [t.body for t in chatwoot.toggles] == [{"status": "open"}]
    assert chatwoot.toggles[0].response["payload"]["success"] is None  # Chatwoot's bot handoff

    await chatwoot.contact_says("hello?", conversation=1)
    await stays_silent(chatwoot, 1)
    assert len(fake_llm.requests) == 1


async def test_a_keyword_hands_over_and_an_api_resume_returns_the_conversation_to_pending(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    client_id = await connected(server, fake_llm, chatwoot, handoff={"userMessage": HANDOFF_TEXT})
    await chatwoot.contact_says("atendente")
    assert await bot_says(chatwoot, 1) == [HANDOFF_TEXT]
    await until(lambda: chatwoot.conversations[1].status == "open")

    session = await session_of(server, client_id, TAG)
    assert session is not None
    status, body = await server.call("POST", f"/api/v1/web-chat-client/{client_id}/sessions/{session.id}/resume")
    assert status == 200 and body["handoff"]["state"] == "bot", body
    assert chatwoot.conversations[1].status == "pending"
    assert [t.body["status"] for t in chatwoot.toggles] == ["open", "pending"]
    await chatwoot.contact_says("ok, what are your hours?", conversation=1)
    assert (await bot_says(chatwoot, 2))[1] == "echo: ok, what are your hours?"


async def test_an_agent_reply_in_a_pending_conversation_takes_it_and_notes_and_echoes_are_ignored(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    client_id = await connected(server, fake_llm, chatwoot)
    await chatwoot.contact_says("hi")
    await bot_says(chatwoot, 1)
    await chatwoot.agent_says(1, "VIP: be nice", private=True)
    await chatwoot.agent_says(1, "Hello Jane, I'll take it from here.")
    await until(lambda: chatwoot.conversations[1].status == "open")  # botline opened it for the agents
    await chatwoot.contact_says("great", conversation=1)
    await stays_silent(chatwoot, 1)
    session = await session_of(server, client_id, TAG)
    assert session is not None
    messages = await store_of(server).messages.list(session.id)
    assert [(m.role.value, m.content, m.agent) for m in messages] == [
        ("user", "hi", None), ("assistant", "echo: hi", None),
        ("assistant", "Hello Jane, I'll take it from here.", "Paula"), ("user", "great", None),
    ]  # the bot's own echo and the private note are not part of the conversation


async def test_a_resolve_arriving_after_the_next_message_still_gives_the_chat_back(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    """Chatwoot's events can arrive out of order: the message says `pending`, so Chatwoot gave it back."""
    client_id = await connected(server, fake_llm, chatwoot)
    await chatwoot.contact_says("hi")
    await bot_says(chatwoot, 1)
    await chatwoot.agent_sets_status(1, "open")
    url, chatwoot.webhook_url = chatwoot.webhook_url, None  # the resolve events are lost on the way
    await chatwoot.agent_sets_status(1, "resolved")
    chatwoot.webhook_url = url
    await chatwoot.contact_says("back again", conversation=1)
    assert (await bot_says(chatwoot, 2))[1] == "echo: back again"
    session = await session_of(server, client_id, TAG)
    assert session is not None and session.handoff is not None and session.handoff.state is Controller.BOT


async def test_webhooks_without_the_bots_signature_are_refused(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    await connected(server, fake_llm, chatwoot)
    chatwoot.secret = "someone-elses-secret"
    await chatwoot.contact_says("hi")
    # the message, then Chatwoot opening the conversation "due to an error with the agent bot"
    assert [(d.json()["event"], d.status) for d in chatwoot.deliveries] == [
        ("message_created", 401), ("conversation_opened", 401), ("conversation_status_changed", 401)]
    chatwoot.secret = None
    await chatwoot.contact_says("hi again", conversation=1)
    assert chatwoot.deliveries[-1].status == 401
    assert chatwoot.bot_texts(1) == []


async def test_the_token_is_masked_and_never_follows_a_new_base_url(
    server: RunningServer, fake_llm: FakeLLM, chatwoot: FakeChatwoot
) -> None:
    client_id = await connected(server, fake_llm, chatwoot)
    status, shown = await server.call("GET", f"/api/v1/web-chat-client/{client_id}")
    assert status == 200
    saved = shown["integrations"]["chatwootIntegration"]
    assert (saved["accessToken"], saved["webhookSecret"], saved["accountId"]) == ("********", "********", 1)
    assert chatwoot.access_token not in str(shown) and SECRET not in str(shown)
    kept = {**integration(chatwoot), "accessToken": "********", "webhookSecret": "********"}
    status, _ = await save_integration(server, client_id, "Chatwoot", {"chatwootIntegration": kept})
    assert status == 200
    moved = {**kept, "baseUrl": "https://chatwoot.attacker.example"}
    status, body = await save_integration(server, client_id, "Chatwoot", {"chatwootIntegration": moved})
    assert status == 400 and "integrations.chatwootIntegration.accessToken" in body["message"], body
    await chatwoot.contact_says("still works?")
    assert await bot_says(chatwoot, 1) == ["echo: still works?"]
