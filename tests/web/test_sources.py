"""The knowledge documents an answer used, under it in the web chat: folded, opened from the keyboard,
readable at 375 px, and shown again after a reload (they are stored with the answer)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.knowledge import create_collection, import_jsonl, jsonl, wait_indexed
from tests.support.server import RunningServer
from tests.web.conftest import PHONE, SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
UPDATE = os.environ.get("BOTLINE_UPDATE_SCREENSHOTS") == "1"

FAQ = {
    "returns-policy-for-electronics-and-large-appliances-bought-online": (
        "You can return electronics within 30 days of delivery for a full refund; large appliances are "
        "collected from your home."),
    "refund-timing": "Refunds for returned items reach your card within 5 business days.",
    "opening-hours": "Our stores open at nine and close at six, Monday to Saturday.",
    "gift-cards": "Gift cards never expire and can be used for any purchase online.",
    "shipping": "Standard shipping takes 3 to 5 business days; express shipping arrives the next day.",
    "privacy": "We never sell personal data. Read our privacy policy for details on cookies.",
}
QUESTION = "Can I return electronics and get a refund?"
ANSWER = "Yes: within 30 days of delivery, and the refund reaches your card within 5 business days."


async def _gateway_over_faq(server: RunningServer) -> dict[str, object]:
    collection_id = await create_collection(server, "Store FAQ")
    status, body = await import_jsonl(server, collection_id, jsonl(*({"docId": n, "text": t} for n, t in FAQ.items())))
    assert status == 200, body
    await wait_indexed(server, collection_id)
    return {"knowledgeCollections": [collection_id], "knowledgeBaseMaximumResults": 2,
            "knowledgeBaseMinimumScore": 0.05}


async def test_sources_fold_under_the_answer_open_from_the_keyboard_and_survive_a_reload(
    page: Page, open_chat: OpenChat, server: RunningServer, fake_llm: FakeLLM,
) -> None:
    await page.set_viewport_size(PHONE)
    chat = await open_chat(gateway=await _gateway_over_faq(server))
    fake_llm.script(Reply(text=ANSWER))
    await page.goto(chat.talk_url)
    await send(page, QUESTION)
    await expect(answers(page)).to_have_text(ANSWER)
    label = page.get_by_text("Sources (2)", exact=True)
    await expect(label).to_be_visible()
    names = page.locator(".bl-source-name")
    await expect(names.first).to_be_hidden()  # folded until asked for
    await label.focus()
    await page.keyboard.press("Enter")
    await expect(names).to_have_text([*FAQ][:2])
    await expect(page.locator(".bl-source-collection")).to_have_text(["Store FAQ", "Store FAQ"])
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    await page.keyboard.press("Enter")
    await expect(names.first).to_be_hidden()

    await page.reload()
    await expect(answers(page)).to_have_text(ANSWER)
    await page.get_by_text("Sources (2)", exact=True).click()
    await expect(page.locator(".bl-source-name")).to_have_text([*FAQ][:2])


async def test_an_answer_without_retrieval_shows_no_sources(
    page: Page, open_chat: OpenChat, server: RunningServer, fake_llm: FakeLLM,
) -> None:
    chat = await open_chat(gateway=await _gateway_over_faq(server))
    fake_llm.script(Reply(text="Hello! How can I help?"))
    await page.goto(chat.talk_url)
    await send(page, "Good morning")
    await expect(answers(page)).to_have_text("Hello! How can I help?")
    await expect(page.locator(".bl-sources")).to_have_count(0)


async def test_screenshot_of_sources_at_phone_width(
    browser: Browser, open_chat: OpenChat, server: RunningServer, fake_llm: FakeLLM, tmp_path: Path,
) -> None:
    chat = await open_chat(gateway=await _gateway_over_faq(server), pageTitle="Acme Store")
    phone = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    fake_llm.script(Reply(text=ANSWER))
    await phone.goto(chat.talk_url)
    await send(phone, QUESTION)
    await expect(answers(phone)).to_have_text(ANSWER)
    await phone.get_by_text("Sources (2)", exact=True).click()
    await expect(phone.locator(".bl-source-name").first).to_be_visible()
    await phone.evaluate("document.activeElement && document.activeElement.blur()")
    target = tmp_path / "webchat-sources-phone.png"
    await phone.screenshot(path=str(target), animations="disabled", caret="hide")
    assert target.stat().st_size > 10_000
    if UPDATE:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / target.name).write_bytes(target.read_bytes())
    await phone.close()
