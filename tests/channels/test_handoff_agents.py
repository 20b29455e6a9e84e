"""People of the business around a channel chat: an agent answering a WhatsApp customer through the API
(the message goes out on WhatsApp), and the operators' Telegram chat told of every handoff and return."""

from __future__ import annotations

from typing import Any

import pytest

from tests.channels.conftest import assert_no_more_sends, connect, connect_telegram, post, session_of, store_of
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.webhook_pusher import JSON, encode_payload
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer

PHONE = "5511999999999"
CUSTOMER = 424242
OPERATORS = -1001234567890
"""The operators' Telegram group."""


@pytest.fixture
def settings_overrides(zapi: FakeZapi, telegram: TelegramEmulator) -> dict[str, Any]:
    return {"providers": {"zapi": {"api_url": zapi.url},
                          "telegram": {"api_url": telegram.url, "mode": "webhook"}}}


def session_path(client_id: str, session_id: str, action: str) -> str:
    return f"/api/v1/web-chat-client/{client_id}/sessions/{session_id}/{action}"


async def test_an_agent_message_through_the_api_is_sent_on_whatsapp_and_silences_the_bot(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", {"instanceId": zapi.instance_id,
                                                        "instanceToken": zapi.instance_token})

    async def customer(text: str) -> None:
        status, _ = await post(server, channel.webhook_url, encode_payload(zapi.text_message(PHONE, text)),
                               {"Content-Type": JSON})
        assert status == 200

    await customer("is my order 42 shipped?")
    await zapi.wait_for_sends(1)
    session = await session_of(server, channel.client_id, f"Zapi:{PHONE}")
    assert session is not None

    status, body = await server.call("POST", session_path(channel.client_id, session.id, "messages"),
                                     json={"content": "Hi, Paula here: it ships tomorrow.", "agent": "Paula"})
    assert status == 200 and body["handoff"]["state"] == "human", body
    sent = await zapi.wait_for_sends(2)
    assert (sent[1].body["phone"], sent[1].body["message"]) == (PHONE, "Hi, Paula here: it ships tomorrow.")

    await customer("great, thanks")
    await assert_no_more_sends(zapi, 2)
    messages = await store_of(server).messages.list(session.id)
    assert [(m.role.value, m.content, m.agent) for m in messages[2:]] == [
        ("assistant", "Hi, Paula here: it ships tomorrow.", "Paula"), ("user", "great, thanks", None)]

    zapi.fail_next(400, count=1)
    status, body = await server.call("POST", session_path(channel.client_id, session.id, "messages"),
                                     json={"content": "Are you still there?", "agent": "Paula"})
    assert status == 502 and "stored but not delivered" in body["message"], body
    stored = await store_of(server).messages.list(session.id)
    assert stored[-1].content == "Are you still there?"  # kept in the conversation for the record


async def test_the_operators_telegram_chat_hears_of_every_handoff_and_return(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    channel = await connect_telegram(server, fake_llm, telegram, handoff={"telegramChatId": str(OPERATORS)})
    assert await telegram.push(telegram.text_update(CUSTOMER, "human")) == 200
    [note] = await telegram.wait_for_messages(1, chat_id=OPERATORS)
    session = await session_of(server, channel.client_id, f"Telegram:{CUSTOMER}")
    assert session is not None
    assert note["text"].startswith(f"A person is needed in chat Telegram:{CUSTOMER} (keyword): the user asked")
    assert note["text"].endswith(f"/api/v1/public/chat-clients/{session.access_key}/transcript.json")
    [answer] = telegram.sent_messages(CUSTOMER)
    assert answer["text"] == "A person will answer you shortly."

    status, _ = await server.call("POST", session_path(channel.client_id, session.id, "resume"))
    assert status == 200
    notes = await telegram.wait_for_messages(2, chat_id=OPERATORS)
    assert notes[1]["text"].startswith(f"Chat Telegram:{CUSTOMER} is back with the bot (api).")
