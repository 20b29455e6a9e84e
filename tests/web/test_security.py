"""Markdown from the model and text from the person can't run script in the page."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.web.conftest import SESSION_LOOP, OpenChat, answers, questions, send

pytestmark = SESSION_LOOP

PAYLOAD = (
    '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>**bold** [link](javascript:window.__xss=3)'
)
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
