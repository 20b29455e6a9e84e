"""Media the bot sends on messaging channels: a protocol function answering with an image (or an MCP
tool returning one) reaches Telegram as sendPhoto after the text, a file as sendDocument, and a file
the provider refuses becomes a notice naming it, the text answer still delivered; Z-API, Evolution and
Kapso through their image and document sends."""

from __future__ import annotations

import base64
from typing import Any

import openai
import orjson
import pytest

from tests.channels.conftest import save_integration
from tests.conftest import create_gateway
from tests.emulators.evolution import FakeEvolution
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.kapso import FakeKapso
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.zapi import FakeZapi
from tests.support.callback_server import Answer, CallbackServer
from tests.support.images import png
from tests.support.server import RunningServer
from tests.support.webchat import client_body, create_client
from tests.tools.mcp_server import PICTURE, McpTestServer

CHAT = 626262
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


PHONE = "5511988887777"
ALIASES = {"Zapi": "zapiIntegration", "EvolutionApi": "evolutionIntegration", "Kapso": "kapsoIntegration"}


@pytest.fixture
def settings_overrides(telegram: TelegramEmulator, zapi: FakeZapi, kapso: FakeKapso) -> dict[str, Any]:
    return {"providers": {"telegram": {"api_url": telegram.url, "mode": "webhook"},
                          "zapi": {"api_url": zapi.url}, "kapso": {"api_url": kapso.url}}}


async def whatsapp_with_tool(server: RunningServer, fake_llm: FakeLLM, kind: str, integration: dict[str, Any],
                             site: CallbackServer, answer: Answer) -> str:
    """A client on `kind` whose gateway has the make_chart function; its webhook URL."""
    function = {"name": "make_chart", "description": "Draws the sales chart.",
                "callbackUrl": site.answer("/chart", answer), "contentFormat": {"type": "object", "properties": {}}}
    client_id = await create_client(server, fake_llm, gateway={"protocolFunctions": [function]})
    status, saved = await save_integration(server, client_id, kind, {ALIASES[kind]: integration})
    assert status == 200, saved
    return str(saved["webhookUrl"])


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
    assert told == "Sent to the user with your answer: make_chart.png (image/png); do not repeat or link them."


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


async def test_an_mcp_tools_image_reaches_telegram_as_a_photo(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    async with McpTestServer() as mcp:
        client_id = await create_client(server, fake_llm, gateway={"mcpSources": [{"name": "art", "url": mcp.url}]})
        status, saved = await save_integration(server, client_id, "Telegram",
                                               {"telegramIntegration": {"botToken": telegram.token}})
        assert status == 200, saved
        fake_llm.script(Reply(tool_calls=[ToolCall("art__picture", {})]), Reply(text="Here is the square."))
        await telegram.push(telegram.text_update(CHAT, "draw me a square"))
        sent = await telegram.wait_for_messages(2)
    assert sent[0]["text"] == "Here is the square."
    [photo] = [call.params for call in telegram.calls_to("sendPhoto") if call.status == 200]
    assert photo["photo"]["data"] == PICTURE and photo["photo"]["filename"] == "art__picture-1.png"


def tool_message(fake_llm: FakeLLM) -> str:
    messages: list[dict[str, Any]] = fake_llm.requests[-1].body["messages"]
    return str(next(m for m in messages if m["role"] == "tool")["content"])


async def test_zapi_sends_the_image_with_send_image_and_the_file_with_send_document(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    integration = {"instanceId": zapi.instance_id, "instanceToken": zapi.instance_token}
    image = png(8, 8)
    async with CallbackServer() as site:
        url = await whatsapp_with_tool(server, fake_llm, "Zapi", integration, site,
                                       Answer(body=image, content_type="image/png"))
        tool_turn(fake_llm, "Your chart.")
        await zapi.push(url, zapi.text_message(PHONE, "chart"))
        sends = await zapi.wait_for_sends(2)
        assert [s.endpoint for s in sends] == ["send-text", "send-image"] and all(s.status == 200 for s in sends)
        assert sends[1].body["image"] == "data:image/png;base64," + base64.b64encode(image).decode()
        site.answer("/chart", Answer(body=PDF, content_type="application/pdf"))
        tool_turn(fake_llm, "Your report.")
        await zapi.push(url, zapi.text_message(PHONE, "report"))
        sends = await zapi.wait_for_sends(4)
    document = sends[3]
    assert document.path.endswith("/send-document/pdf") and document.status == 200
    assert document.body["fileName"] == "make_chart.pdf"
    assert base64.b64decode(document.body["document"].split(",", 1)[1]) == PDF


async def test_evolution_sends_files_with_send_media(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    integration = {"endpointUrl": evo.url, "instanceName": evo.instance, "apiKey": evo.default.token}
    async with CallbackServer() as site:
        url = await whatsapp_with_tool(server, fake_llm, "EvolutionApi", integration, site,
                                       Answer(body=PDF, content_type="application/pdf"))
        tool_turn(fake_llm, "Your report.")
        await evo.push(url, evo.text_message(PHONE, "report"))
        sends = await evo.wait_for_sends(2)
    assert [s.endpoint for s in sends] == ["sendText", "sendMedia"] and sends[1].status == 201
    assert sends[1].body["mediatype"] == "document" and sends[1].body["mimetype"] == "application/pdf"
    assert evo.media == [("document", "make_chart.pdf", PDF)]


async def test_kapso_uploads_then_sends_an_image_and_a_document(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    integration = {"apiKey": kapso.api_key, "phoneNumberId": kapso.phone_number_id}
    image = png(8, 8)
    async with CallbackServer() as site:
        url = await whatsapp_with_tool(server, fake_llm, "Kapso", integration, site,
                                       Answer(body=image, content_type="image/png"))
        tool_turn(fake_llm, "Your chart.")
        await kapso.push(url, kapso.text_message(PHONE, "chart"))
        sends = await kapso.wait_for_sends(2)
        site.answer("/chart", Answer(body=PDF, content_type="application/pdf"))
        tool_turn(fake_llm, "Your report.")
        await kapso.push(url, kapso.text_message(PHONE, "another"))
        sends = await kapso.wait_for_sends(4)
    assert [s.body["type"] for s in sends] == ["text", "image", "text", "document"]
    assert kapso.media[sends[1].body["image"]["id"]] == ("image/png", image)
    assert sends[3].body["document"]["filename"] == "make_chart.pdf"
    assert kapso.media[sends[3].body["document"]["id"]] == ("application/pdf", PDF)


async def test_a_markdown_image_on_an_allowed_host_reaches_telegram_as_a_photo(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    image = png(12, 12)
    async with CallbackServer() as site:
        url = site.answer("/logo.png", Answer(body=image, content_type="image/png"))
        client_id = await create_client(server, fake_llm, imageHosts=["127.0.0.1"])
        status, saved = await save_integration(server, client_id, "Telegram",
                                               {"telegramIntegration": {"botToken": telegram.token}})
        assert status == 200, saved
        fake_llm.script(Reply(text=f"Our logo: ![logo]({url})"))
        await telegram.push(telegram.text_update(CHAT, "logo?"))
        await telegram.wait_for_messages(2)
    [photo] = telegram.calls_to("sendPhoto")
    assert photo.params["photo"]["data"] == image and photo.params["photo"]["filename"] == "logo.png"


async def test_image_hosts_must_be_host_names(server: RunningServer, fake_llm: FakeLLM) -> None:
    status, body = await server.call("POST", "/api/v1/web-chat-client",
                                     json=client_body(None, imageHosts=["https://cdn.example.com/x"]))
    assert status == 400 and "imageHosts" in body["message"]


async def test_on_v1_the_model_is_told_the_file_cannot_be_shown(server: RunningServer, fake_llm: FakeLLM) -> None:
    async with CallbackServer() as site:
        function = {"name": "make_chart", "description": "Draws the sales chart.",
                    "callbackUrl": site.answer("/chart", Answer(body=png(4, 4), content_type="image/png")),
                    "contentFormat": {"type": "object", "properties": {}}}
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[function])
        tool_turn(fake_llm, "I could not show it here.")
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
        answer = await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "chart"}])
        await client.close()
    assert answer.choices[0].message.content == "I could not show it here."
    assert tool_message(fake_llm) == ("The tool made make_chart.png (image/png), but files cannot be "
                                      "shown in this conversation.")


async def test_the_json_attachments_shape_sends_its_files_and_gives_its_text_to_the_model(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    image = png(6, 6)
    answer = {"text": "Q3 sales: 42.", "attachments": [
        {"data": base64.b64encode(image).decode(), "contentType": "image/png", "fileName": "q3.png"},
        {"data": base64.b64encode(PDF).decode(), "contentType": "application/pdf"}]}
    async with CallbackServer() as site:
        await connect_with_tool(server, fake_llm, telegram, site,
                                Answer(body=orjson.dumps(answer), content_type="application/json"))
        tool_turn(fake_llm, "Sales were 42; chart and report attached.")
        await telegram.push(telegram.text_update(CHAT, "q3?"))
        sent = await telegram.wait_for_messages(3)
    assert "photo" in sent[1]["message"] and sent[2]["message"]["document"]["file_name"] == "make_chart-2.pdf"
    assert telegram.calls_to("sendPhoto")[0].params["photo"]["filename"] == "q3.png"
    assert tool_message(fake_llm) == ("Q3 sales: 42.\n\nSent to the user with your answer: q3.png (image/png), "
                                      "make_chart-2.pdf (application/pdf); do not repeat or link them.")


async def test_bad_attachments_are_a_tool_error_for_the_model(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    answer = {"text": "x", "attachments": [{"data": "%%%", "contentType": "image/png"}]}
    async with CallbackServer() as site:
        await connect_with_tool(server, fake_llm, telegram, site,
                                Answer(body=orjson.dumps(answer), content_type="application/json"))
        tool_turn(fake_llm, "Sorry, the chart failed.")
        await telegram.push(telegram.text_update(CHAT, "chart"))
        await telegram.wait_for_messages(1)
    assert tool_message(fake_llm) == "The tool make_chart answered a file that could not be read. Tell the user."
    assert telegram.calls_to("sendPhoto") == []
