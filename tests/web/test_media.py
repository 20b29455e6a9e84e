"""Media the bot sends, in the web chat: an image a tool made is drawn inline under the answer (decoded
by Chromium under the page's CSP), a file is a download chip that saves the tool's bytes; after a reload
the image, the chip and the spoken answer's player come back (kept with the conversation)."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.images import png
from tests.web.conftest import PHONE, SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "chat-375-media.png"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
LOAD_PLAYER = "() => { const a = document.querySelector('.bl-audio audio'); a.preload = 'auto'; a.load(); }"
PLAYER_LOADED = "() => { const a = document.querySelector('.bl-audio audio'); return a && a.readyState >= 1; }"


def tool(site: CallbackServer, answer: Answer) -> dict[str, object]:
    return {"name": "make_chart", "description": "Draws the sales chart.",
            "callbackUrl": site.answer("/chart", answer), "contentFormat": {"type": "object", "properties": {}}}


async def test_an_image_from_a_tool_is_shown_inline_under_the_answer(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        chat = await open_chat(gateway={"protocolFunctions": [tool(site, Answer(body=png(40, 20),
                                                                                 content_type="image/png"))]})
        fake_llm.script(Reply(tool_calls=[ToolCall("make_chart", {})]), Reply(text="Here is the chart."))
        await page.goto(chat.talk_url)
        await send(page, "chart please")
        await expect(answers(page)).to_have_text("Here is the chart.")
        image = page.get_by_role("img", name="make_chart.png")
        await expect(image).to_be_visible()
        size = await image.evaluate("img => img.complete ? [img.naturalWidth, img.naturalHeight] : null")
    assert size == [40, 20]  # decoded: the page's CSP let the data: URL through


async def test_a_file_from_a_tool_is_a_download_chip(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    async with CallbackServer() as site:
        chat = await open_chat(gateway={"protocolFunctions": [tool(site, Answer(body=PDF,
                                                                                 content_type="application/pdf"))]})
        fake_llm.script(Reply(tool_calls=[ToolCall("make_chart", {})]), Reply(text="The report is attached."))
        await page.goto(chat.talk_url)
        await send(page, "report please")
        chip = page.get_by_role("link", name="make_chart.pdf")
        await expect(chip).to_be_visible()
        async with page.expect_download() as download_info:
            await chip.click()
        download = await download_info.value
        path = await download.path()
    assert download.suggested_filename == "make_chart.pdf" and path.read_bytes() == PDF


async def test_a_markdown_image_on_an_allowed_host_is_fetched_by_botline_and_shown(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        url = site.answer("/img/sales.png", Answer(body=png(30, 10), content_type="image/png"))
        elsewhere = url.replace("127.0.0.1", "localhost").replace("sales", "track")
        chat = await open_chat(imageHosts=["127.0.0.1"])
        fake_llm.script(Reply(text=f"Sales: ![sales chart]({url}) and ![pixel]({elsewhere})"))
        await page.goto(chat.talk_url)
        await send(page, "sales?")
        image = page.get_by_role("img", name="sales.png")
        await expect(image).to_be_visible()
        assert await image.evaluate("img => img.naturalWidth") == 30
        await expect(page.locator(".bl-bot-image")).to_have_count(1)  # the other host is not fetched
        assert [r.path for r in site.received] == ["/img/sales.png"]  # fetched once, by botline, not the page


async def test_a_wide_image_and_a_chip_fit_a_375_px_phone(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    await page.set_viewport_size(PHONE)
    async with CallbackServer() as site:
        chat = await open_chat(gateway={"protocolFunctions": [tool(site, Answer(body=png(900, 300),
                                                                                 content_type="image/png"))]})
        fake_llm.script(Reply(tool_calls=[ToolCall("make_chart", {})]), Reply(text="Sales by **month**:"))
        await page.goto(chat.talk_url)
        await send(page, "chart please")
        image = page.get_by_role("img", name="make_chart.png")
        await expect(image).to_be_visible()
        await page.wait_for_function("() => document.querySelector('.bl-bot-image').complete")
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    box = await image.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    await page.screenshot(path=str(SCREENSHOT), animations="disabled", caret="hide")


async def test_after_a_reload_the_image_the_file_chip_and_the_player_come_back(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    files = {"text": "made", "attachments": [
        {"data": base64.b64encode(png(40, 20)).decode(), "contentType": "image/png", "fileName": "chart.png"},
        {"data": base64.b64encode(PDF).decode(), "contentType": "application/pdf", "fileName": "report.pdf"}]}
    async with CallbackServer() as site:
        chat = await open_chat(audioSynthesisSource="Gpt4oTts", gateway={"protocolFunctions": [
            tool(site, Answer(body=orjson.dumps(files), content_type="application/json"))]})
        fake_llm.script(Reply(tool_calls=[ToolCall("make_chart", {})]), Reply(text="Here is the report."))
        await page.goto(chat.talk_url)
        await send(page, "report please")
        await expect(page.get_by_role("img", name="chart.png")).to_be_visible()
        await page.wait_for_function(PLAYER_LOADED)  # the answer was spoken (and its audio kept)
        await page.reload()
        await expect(answers(page)).to_have_text("Here is the report.")
        image = page.get_by_role("img", name="chart.png")
        await expect(image).to_be_visible()
        assert await image.evaluate("img => img.complete ? [img.naturalWidth, img.naturalHeight] : null") == [40, 20]
        chip = page.get_by_role("link", name="report.pdf")
        async with page.expect_download() as download_info:
            await chip.click()
        assert (await (await download_info.value).path()).read_bytes() == PDF
        await expect(page.get_by_label("Spoken answer", exact=True)).to_be_attached()
        await page.evaluate(LOAD_PLAYER)  # as pressing play would (it is not preloaded after a reload)
        await page.wait_for_function(PLAYER_LOADED)
        duration = await page.evaluate("() => document.querySelector('.bl-audio audio').duration")
    assert abs(duration - 1.0) < 0.1  # the fake's one-second MP3, decoded by Chromium after the reload
    assert len(fake_llm.speech_requests()) == 1  # the reloaded player plays the kept audio
