"""Media the bot sends, in the web chat: an image a tool made is drawn inline under the answer (decoded
by Chromium under the page's CSP), a file is a download chip that saves the tool's bytes."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.images import png
from tests.web.conftest import PHONE, SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "chat-375-media.png"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


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
