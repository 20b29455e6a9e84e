"""Media the bot sends on Telegram: a protocol function answering with an image reaches the chat as
sendPhoto after the text, a file as sendDocument, and a file the provider refuses becomes a notice
naming it, the text answer still delivered."""

from __future__ import annotations

from typing import Any

import pytest

from tests.channels.conftest import save_integration
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.telegram import TelegramEmulator
from tests.support.callback_server import Answer, CallbackServer
from tests.support.images import png
from tests.support.server import RunningServer
from tests.support.webchat import create_client

CHAT = 626262
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def settings_overrides(telegram: TelegramEmulator) -> dict[str, Any]:
    return {"providers": {"telegram": {"api_url": telegram.url, "mode": "webhook"}}}


async def connect_with_tool(server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator,
                            site: CallbackServer, answer: Answer) -> None:
    function = {"name": "make_chart", "description": "Draws the sales chart.",
                "callbackUrl": site.answer("/chart", answer), "contentFormat": {"type": "object", "properties": {}}}
    client_id = await create_client(server, fake_llm, gateway={"protocolFunctions": [function]})
    status, saved = await save_integration(server, client_id, "Telegram",
                                           {"telegramIntegration": {"botToken": telegram.token}})
    assert status == 200, saved


def tool_turn(fake_llm: FakeLLM, text: str) -> None:
    fake_llm.script(Reply(tool_calls=[ToolCall("make_chart", {})]), Reply(text=text))


async def test_an_image_from_a_tool_reaches_telegram_as_a_photo_after_the_text(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    image = png(64, 32)
    async with CallbackServer() as site:
        await connect_with_tool(server, fake_llm, telegram, site, Answer(body=image, content_type="image/png"))
        tool_turn(fake_llm, "Here is this month's chart.")
        await telegram.push(telegram.text_update(CHAT, "show me the sales chart"))
        sent = await telegram.wait_for_messages(2)
    assert sent[0]["text"] == "Here is this month's chart."
    [photo] = [call.params for call in telegram.calls_to("sendPhoto") if call.status == 200]
    assert photo["photo"]["data"] == image and photo["photo"]["filename"] == "make_chart.png"
    assert sent[1]["message"]["photo"][0]["width"] == 64 and sent[1]["message"]["photo"][0]["height"] == 32
    told = tool_message(fake_llm)
    assert "make_chart.png" in told and "was sent to the user" in told  # the model knows, without the bytes


async def test_a_file_from_a_tool_reaches_telegram_as_a_document(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    async with CallbackServer() as site:
        await connect_with_tool(server, fake_llm, telegram, site, Answer(body=PDF, content_type="application/pdf"))
        tool_turn(fake_llm, "The report is attached.")
        await telegram.push(telegram.text_update(CHAT, "send me the report"))
        sent = await telegram.wait_for_messages(2)
    assert sent[0]["text"] == "The report is attached."
    document = sent[1]["message"]["document"]
    assert document["file_name"] == "make_chart.pdf" and document["mime_type"] == "application/pdf"
    [call] = telegram.calls_to("sendDocument")
    assert call.params["document"]["data"] == PDF


async def test_a_refused_image_becomes_a_notice_and_the_text_still_arrives(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    async with CallbackServer() as site:  # labelled PNG, not an image: Telegram's processing fails
        await connect_with_tool(server, fake_llm, telegram, site, Answer(body=b"not really", content_type="image/png"))
        tool_turn(fake_llm, "Here is the chart.")
        await telegram.push(telegram.text_update(CHAT, "chart please"))
        sent = await telegram.wait_for_messages(2)
    assert [m["text"] for m in sent] == ["Here is the chart.", "(The image make_chart.png could not be sent here.)"]
    assert [call.status for call in telegram.calls_to("sendPhoto")] == [400]  # a refusal is not retried


async def test_a_text_answer_from_a_tool_sends_no_media(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    async with CallbackServer() as site:
        await connect_with_tool(server, fake_llm, telegram, site,
                                Answer(body='{"total": 42}', content_type="application/json"))
        tool_turn(fake_llm, "Sales were 42.")
        await telegram.push(telegram.text_update(CHAT, "sales?"))
        await telegram.wait_for_messages(1)
    assert telegram.calls_to("sendPhoto") == [] and telegram.calls_to("sendDocument") == []
    assert tool_message(fake_llm) == '{"total": 42}'


def tool_message(fake_llm: FakeLLM) -> str:
    messages: list[dict[str, Any]] = fake_llm.requests[-1].body["messages"]
    return str(next(m for m in messages if m["role"] == "tool")["content"])
