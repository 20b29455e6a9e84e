"""The fake Chatwoot, driven through plain aiohttp clients and a small webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.emulators.chatwoot import BOT_FAILURE_ACTIVITY, NOT_FOR_BOTS, FakeChatwoot, chatwoot_signature
from tests.emulators.webhook_pusher import WebhookReceiver

TOKEN = "bot-token"
SECRET = "bot-secret"


@pytest.fixture
async def chatwoot(hook: WebhookReceiver) -> AsyncIterator[FakeChatwoot]:
    async with FakeChatwoot(access_token=TOKEN, secret=SECRET, webhook_url=hook.url + "/bot",
                            retry_scale=0.001) as fake:
        yield fake


async def call(http: aiohttp.ClientSession, chatwoot: FakeChatwoot, path: str, body: Any = None, *,
               token: str = TOKEN, method: str = "POST", account: int = 1) -> tuple[int, Any]:
    url = f"{chatwoot.url}/api/v1/accounts/{account}/{path}"
    async with http.request(method, url, json=body, headers={"api_access_token": token}) as response:
        return response.status, await response.json(content_type=None) if await response.read() else None


async def test_a_contact_message_arrives_signed_with_string_enums_and_a_sender_without_type(
    chatwoot: FakeChatwoot, hook: WebhookReceiver
) -> None:
    await chatwoot.contact_says("Where is my order?")
    received = (await hook.wait_for(1))[0]
    payload = received.json()
    assert (payload["event"], payload["message_type"], payload["content"]) == (
        "message_created", "incoming", "Where is my order?")
    assert payload["conversation"]["status"] == "pending" and payload["conversation"]["id"] == 1
    assert "type" not in payload["sender"] and payload["sender"]["name"] == "Jane"
    assert payload["conversation"]["messages"][0]["message_type"] == 0
    stamp = received.headers["X-Chatwoot-Timestamp"]
    assert received.headers["X-Chatwoot-Signature"] == chatwoot_signature(SECRET, stamp, received.body)


async def test_the_bot_answers_through_the_api_and_hears_its_own_echo(
    chatwoot: FakeChatwoot, hook: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    await chatwoot.contact_says("hi")
    status, answer = await call(http, chatwoot, "conversations/1/messages",
                                {"content": "Hello!", "message_type": "outgoing", "private": False})
    assert status == 200 and answer["message_type"] == 1 and answer["sender"]["type"] == "agent_bot"
    assert answer["conversation_id"] == 1 and isinstance(answer["created_at"], int)
    echo = (await hook.wait_for(2))[1].json()
    assert (echo["message_type"], echo["sender"]["type"], echo["content"]) == ("outgoing", "agent_bot", "Hello!")
    assert chatwoot.bot_texts(1) == ["Hello!"]


async def test_a_bot_handoff_opens_the_conversation_with_success_null(
    chatwoot: FakeChatwoot, hook: WebhookReceiver, http: aiohttp.ClientSession
) -> None:
    await chatwoot.contact_says("a person please")
    status, answer = await call(http, chatwoot, "conversations/1/toggle_status", {"status": "open"})
    assert status == 200
    assert answer["payload"] == {"success": None, "conversation_id": 1, "current_status": "open",
                                 "snoozed_until": None}
    assert chatwoot.conversations[1].status == "open"
    events = [r.json() for r in await hook.wait_for(3)]
    assert [e["event"] for e in events[1:]] == ["conversation_opened", "conversation_status_changed"]
    assert events[2]["changed_attributes"] == [{"status": {"previous_value": "pending", "current_value": "open"}}]
    _, again = await call(http, chatwoot, "conversations/1/toggle_status", {"status": "resolved"})
    assert again["payload"]["success"] is True


async def test_a_resolved_conversation_comes_back_pending_with_the_next_contact_message(
    chatwoot: FakeChatwoot, hook: WebhookReceiver
) -> None:
    await chatwoot.contact_says("hi")
    await chatwoot.agent_sets_status(1, "resolved")
    await chatwoot.contact_says("me again", conversation=1)
    events = [r.json() for r in await hook.wait_for(5)]
    assert [e["event"] for e in events] == ["message_created", "conversation_resolved", "conversation_status_changed",
                                            "conversation_status_changed", "message_created"]
    assert events[-1]["conversation"]["status"] == "pending"


async def test_private_notes_and_agent_replies_reach_the_bot_too(
    chatwoot: FakeChatwoot, hook: WebhookReceiver
) -> None:
    await chatwoot.contact_says("hi")
    await chatwoot.agent_says(1, "internal: VIP customer", private=True)
    await chatwoot.agent_says(1, "Hi Jane, Paula here.")
    note, reply = [r.json() for r in (await hook.wait_for(3))[1:]]
    assert (note["message_type"], note["private"], note["sender"]["type"]) == ("outgoing", True, "user")
    assert (reply["private"], reply["sender"]["name"]) == (False, "Paula")
    assert chatwoot.conversations[1].status == "pending"  # a human reply does not change it (#4410)


async def test_the_bot_token_works_only_on_the_allow_list(chatwoot: FakeChatwoot, http: aiohttp.ClientSession) -> None:
    await chatwoot.contact_says("hi")
    assert await call(http, chatwoot, "conversations/1/messages", method="GET") == (401, {"error": NOT_FOR_BOTS})
    assert await call(http, chatwoot, "contacts", method="GET") == (401, {"error": NOT_FOR_BOTS})
    assert (await call(http, chatwoot, "conversations/1/messages", {"content": "x"}, token="nope"))[0] == 401
    assert (await call(http, chatwoot, "conversations/1/messages", {"content": "x"}, account=2))[1] == {
        "error": "Bot is not authorized to access this account"}
    assert (await call(http, chatwoot, "conversations/1/toggle_typing_status", {"typing_status": "on"}))[0] == 401
    incoming = {"content": "x", "message_type": "incoming"}
    status, answer = await call(http, chatwoot, "conversations/1/messages", incoming)
    assert (status, answer) == (422, {"error": "Incoming messages are only allowed in Api inboxes"})


async def test_a_failing_bot_gets_two_retries_on_500_and_the_conversation_is_opened(
    chatwoot: FakeChatwoot, hook: WebhookReceiver
) -> None:
    hook.script(500, 500, 500)
    await chatwoot.contact_says("hello?")
    assert [d.attempt for d in chatwoot.deliveries[:3]] == [1, 2, 3]
    assert len({d.headers["X-Chatwoot-Delivery"] for d in chatwoot.deliveries[:3]}) == 1
    assert chatwoot.conversations[1].status == "open"
    assert chatwoot.conversations[1].texts("activity") == [BOT_FAILURE_ACTIVITY]


async def test_other_failures_are_not_retried(chatwoot: FakeChatwoot, hook: WebhookReceiver) -> None:
    hook.script(503)
    await chatwoot.contact_says("hello?")
    assert [d.status for d in chatwoot.deliveries[:1]] == [503]
    assert chatwoot.deliveries[1].json()["event"] == "conversation_opened"  # no second attempt of the message
