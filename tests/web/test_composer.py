"""The message box: attachments for the enabled input modes only, and a layout that fits a phone."""

from __future__ import annotations

import base64

from playwright.async_api import Browser, Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.web.conftest import PHONE, SESSION_LOOP, OpenChat, answers, questions, send

pytestmark = SESSION_LOOP

PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def last_user_content(fake_llm: FakeLLM) -> object:
    return fake_llm.requests[-1].body["messages"][-1]["content"]


async def test_only_enabled_input_modes_have_attach_buttons(page: Page, open_chat: OpenChat) -> None:
    chat = await open_chat(inputModes=["Image"])
    await page.goto(chat.talk_url)
    await expect(page.get_by_role("button", name="Attach an image")).to_be_visible()
    await expect(page.get_by_role("button", name="Attach a document")).to_have_count(0)
    await expect(page.get_by_role("button", name="Attach audio")).to_have_count(0)

    plain = await open_chat()
    await page.goto(plain.talk_url)
    await expect(page.get_by_role("textbox")).to_be_visible()
    await expect(page.get_by_role("button", name="Attach an image")).to_have_count(0)


async def test_an_image_and_a_document_are_sent_as_content_parts(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat(inputModes=["Image", "Document"])
    fake_llm.script(Reply(text="A single pixel and your notes."))
    await page.goto(chat.talk_url)

    async with page.expect_file_chooser() as chooser_info:
        await page.get_by_role("button", name="Attach an image").click()
    chooser = await chooser_info.value
    await chooser.set_files(files=[{"name": "pixel.png", "mimeType": "image/png", "buffer": PIXEL_PNG}])
    await expect(page.get_by_text("pixel.png")).to_be_visible()
    await page.get_by_role("button", name="Remove attachment: pixel.png").click()
    await expect(page.get_by_text("pixel.png")).to_have_count(0)

    await chooser.set_files(files=[{"name": "pixel.png", "mimeType": "image/png", "buffer": PIXEL_PNG}])
    await page.locator("input[type=file][data-mode=Document]").set_input_files(
        files=[{"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Notes\nBring the receipt."}])
    await expect(page.get_by_text("notes.md")).to_be_visible()
    await send(page, "What are these?")

    await expect(answers(page)).to_have_text("A single pixel and your notes.")
    content = last_user_content(fake_llm)
    assert isinstance(content, list)
    assert content[0] == {"type": "text", "text": "What are these?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PIXEL_PNG).decode()
    assert content[2]["type"] == "text"
    assert "notes.md" in content[2]["text"] and "Bring the receipt." in content[2]["text"]

    question = questions(page)
    await expect(question.locator("img")).to_have_count(1)
    await expect(question).to_contain_text("notes.md")
    await expect(page.get_by_text("pixel.png")).to_have_count(0)  # the composer is empty again

    await page.reload()  # stored parts: the image and a chip for the document, not its text
    await expect(questions(page).locator("img")).to_have_count(1)
    await expect(questions(page)).to_contain_text("notes.md")
    await expect(questions(page)).not_to_contain_text("Bring the receipt.")


async def test_the_chat_fits_a_375px_phone(browser: Browser, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat(suggestionButtons=[{"label": "A rather long suggestion that must wrap nicely",
                                               "prompt": "Hello"}])
    fake_llm.script(Reply(text="```\n" + "x" * 300 + "\n```\n\n" + "word " * 80))
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await page.goto(chat.talk_url)
        await expect(page.get_by_role("button", name="A rather long suggestion that must wrap nicely")).to_be_visible()
        await send(page, "Show me a long line")
        await expect(answers(page).locator("pre")).to_be_visible()
        await expect(page.get_by_role("button", name="Retry")).to_be_visible()

        for control in (page.get_by_role("textbox"), page.get_by_role("button", name="Send")):
            await expect(control).to_be_visible()
            await expect(control).to_be_in_viewport()
            box = await control.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        code = await answers(page).locator("pre").bounding_box()
        assert code is not None and code["x"] + code["width"] <= PHONE["width"]
    finally:
        await context.close()
