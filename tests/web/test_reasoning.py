"""A reasoning model's thinking in the web chat: a collapsible block, open while it streams, closed once the
answer is there, usable from the keyboard, and shown again on reload when the gateway stores it."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.web.conftest import PHONE, SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP


async def test_thinking_streams_open_then_folds_under_its_label(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    await page.set_viewport_size(PHONE)
    chat = await open_chat(gateway={"flags": ["ThinkingProcess", "IncludeStoredReasoning"]})
    fake_llm.script(Reply(text="Paris is bigger.", reasoning="Paris has 2.1M people, Lyon 0.5M.", chunk_delay=0.05))
    await page.goto(chat.talk_url)
    await send(page, "Which is bigger?")
    block = page.locator(".bl-reasoning")
    await expect(block).to_have_attribute("open", "")  # open while the thinking streams
    await expect(answers(page)).to_have_text("Paris is bigger.")
    await expect(block).not_to_have_attribute("open", "")
    text = page.locator(".bl-reasoning-text")
    await expect(text).to_be_hidden()
    label = page.get_by_text("Thought process", exact=True)
    await label.focus()
    await page.keyboard.press("Enter")
    await expect(text).to_have_text("Paris has 2.1M people, Lyon 0.5M.")
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    await page.reload()
    await expect(page.locator(".bl-reasoning")).to_have_count(1)  # stored: shown again, folded
    await expect(page.locator(".bl-reasoning-text")).to_be_hidden()


async def test_no_block_when_the_gateway_does_not_show_thinking(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text="Paris.", reasoning="Private thoughts."))
    await page.goto(chat.talk_url)
    await send(page, "Which is bigger?")
    await expect(answers(page)).to_have_text("Paris.")
    await expect(page.locator(".bl-reasoning")).to_have_count(0)
    assert "Private thoughts" not in await page.content()
