"""Screenshots of the chat at 1280 px and 375 px, for docs/webchat.md and the README.

They are always rendered (to a temporary folder) so the layout is exercised; set
BOTLINE_UPDATE_SCREENSHOTS=1 to also write them to docs/img/.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer
from tests.web.conftest import DESKTOP, PHONE, SESSION_LOOP, HostSite, OpenChat, WebChat, answers, send

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
UPDATE = os.environ.get("BOTLINE_UPDATE_SCREENSHOTS") == "1"

SHOP_PAGE = """<!doctype html>
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Shop</title>
<style>
  body { margin: 0; font-family: system-ui, sans-serif; color: #1f2328; background: #fff; }
  header { padding: 22px 48px; border-bottom: 1px solid #eee; font-weight: 700; font-size: 20px; }
  main { padding: 48px; max-width: 560px; }
  h1 { font-size: 40px; margin: 0 0 12px; }
  p { font-size: 18px; color: #555; line-height: 1.5; }
</style>
<header>Acme Shop</header>
<main>
  <h1>Fast fibre, no fuss.</h1>
  <p>Plans from 100 Mb/s to 2 Gb/s, with a router that just works. Questions? Our assistant is one click away.</p>
</main>
{script}
"""

pytestmark = SESSION_LOOP

MARKDOWN_ANSWER = """### Resetting your router

Here's the quickest way to get back online:

1. Unplug the router and wait **30 seconds**.
2. Plug it back in and wait for the *Internet* light to turn solid.
3. If it still blinks, run the check below from a computer on your network:

```bash
ping -c 4 192.168.1.1
curl -I https://status.acme.example
```

Still stuck? Reply with the model number (it's on the sticker under the device) and I'll walk you \
through a factory reset.
"""

FIRST_QUESTION = "Is there an outage in Porto right now?"
FIRST_ANSWER = "No, there are **no outages** reported around Porto at the moment. All our services there are running."
QUESTION = "My internet keeps dropping. How do I reset the router?"

SUGGESTIONS = [
    {"label": "Reset my router", "prompt": "How do I reset my router?"},
    {"label": "Check my bill", "prompt": "Why is my bill higher this month?"},
    {"label": "Upgrade my plan", "prompt": "What plans can I upgrade to?"},
]

LOOK = {
    "pageTitle": "Acme Support", "helloLabel": "Hi there! How can we help?",
    "helloSubLabel": "Ask about your plan, your bill or your equipment.", "suggestionButtons": SUGGESTIONS,
}


async def _conversation(page: Page, chat: WebChat, fake_llm: FakeLLM, *, warm_up: bool = False) -> None:
    await page.goto(chat.talk_url)
    if warm_up:
        fake_llm.script(Reply(text=FIRST_ANSWER))
        await send(page, FIRST_QUESTION)
        await expect(answers(page)).to_have_count(1)
        await expect(page.get_by_role("button", name="Retry")).to_be_visible()
    fake_llm.script(Reply(text=MARKDOWN_ANSWER))
    await send(page, QUESTION)
    await expect(answers(page).locator("pre code")).to_contain_text("ping -c 4")
    await expect(page.get_by_role("button", name="Retry")).to_be_visible()


async def _shoot(page: Page, name: str, tmp_path: Path) -> None:
    await page.mouse.move(0, 0)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    target = tmp_path / name
    await page.screenshot(path=str(target), animations="disabled", caret="hide")
    assert target.stat().st_size > 10_000
    if UPDATE:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / name).write_bytes(target.read_bytes())


async def test_screenshots_at_desktop_and_phone_width(
    browser: Browser, open_chat: OpenChat, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    chat = await open_chat(**LOOK)
    desktop = await browser.new_page(viewport=DESKTOP)
    await _conversation(desktop, chat, fake_llm, warm_up=True)
    await _shoot(desktop, "chat-1280.png", tmp_path)

    phone = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    await _conversation(phone, await open_chat(**LOOK), fake_llm)
    await _shoot(phone, "chat-375.png", tmp_path)

    empty = await open_chat(**LOOK)
    await phone.goto(empty.talk_url)
    await expect(phone.get_by_role("button", name="Reset my router")).to_be_visible()
    await _shoot(phone, "chat-375-empty.png", tmp_path)


async def test_screenshot_of_the_embed_launcher(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM, host_site: HostSite, server: RunningServer, tmp_path: Path
) -> None:
    chat = await open_chat(**{**LOOK, "primaryColor": "#0f766e"})
    embed = f'<script src="{server.url}/embed.js" data-talk-url="{chat.talk_url}"></script>'
    shop = SHOP_PAGE.replace("{script}", embed)
    fake_llm.script(Reply(text=MARKDOWN_ANSWER))
    await page.goto(host_site.serve("shop", shop))
    await page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("[data-botline-embed] iframe")
    await frame.get_by_role("textbox").fill(QUESTION)
    await frame.get_by_role("textbox").press("Enter")
    await expect(frame.locator("pre code")).to_contain_text("ping -c 4")
    await _shoot(page, "embed-1280.png", tmp_path)
