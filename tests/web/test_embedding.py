"""The chat inside other sites: a plain iframe (allowed or refused by frame-ancestors) and embed.js.

The host pages come from another loopback port, which is another origin.
"""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer
from tests.web.conftest import PHONE, SESSION_LOOP, HostSite, OpenChat

pytestmark = SESSION_LOOP

RECORD_MESSAGES = (
    "<script>window.received = [];"
    "addEventListener('message', e => received.push({origin: e.origin, data: e.data}));</script>"
)


def iframe_page(talk_url: str) -> str:
    return (f"<!doctype html><title>Partner site</title><h1>Partner site</h1>{RECORD_MESSAGES}"
            f'<iframe id="chat" src="{talk_url}" title="Support chat" style="width:420px;height:640px"></iframe>')


def embed_page(server: RunningServer, talk_url: str, attributes: str = "") -> str:
    tag = f'<script src="{server.url}/embed.js" data-talk-url="{talk_url}" {attributes}></script>'
    viewport = '<meta name="viewport" content="width=device-width, initial-scale=1">'
    return f"<!doctype html>{viewport}<title>Shop</title><h1>Shop</h1>{tag}{tag}"  # included twice on purpose


async def test_an_allowed_origin_can_frame_the_chat(page: Page, open_chat: OpenChat, host_site: HostSite) -> None:
    chat = await open_chat(allowedFrameOrigins=[host_site.url])
    await page.goto(host_site.serve("partner", iframe_page(chat.talk_url)))

    frame = page.frame_locator("#chat")
    await expect(frame.get_by_role("heading", name="Hi, how can we help?")).to_be_visible()
    await frame.get_by_role("textbox").fill("Hello from the partner")
    await frame.get_by_role("textbox").press("Enter")
    await expect(frame.get_by_role("article", name="Assistant")).to_contain_text("echo: Hello from the partner")

    await page.wait_for_function("window.received.length > 0")
    [message] = await page.evaluate("window.received")
    assert message["origin"] == chat.talk_url.split("/chat/")[0]  # the chat's origin (webchat.chat_origin)
    assert message["data"]["type"] == "botline:theme" and message["data"]["color"] == "#4f46e5"


async def test_another_origin_is_refused(page: Page, open_chat: OpenChat, host_site: HostSite) -> None:
    chat = await open_chat(allowedFrameOrigins=["https://elsewhere.example"])
    await page.goto(host_site.serve("intruder", iframe_page(chat.talk_url)))

    handle = await page.locator("#chat").element_handle()
    assert handle is not None
    frame = await handle.content_frame()
    assert frame is not None
    await frame.wait_for_load_state()
    assert frame.url.startswith("chrome-error://"), frame.url
    assert await frame.locator("textarea").count() == 0
    assert await page.evaluate("window.received") == []
    await page.goto(chat.talk_url)  # the page itself is fine: only the framing is refused
    await expect(page.get_by_role("textbox")).to_be_visible()


async def test_the_embed_launcher_opens_and_closes_the_chat(
    page: Page, open_chat: OpenChat, host_site: HostSite, server: RunningServer
) -> None:
    chat = await open_chat(primaryColor="#4f46e5")
    await page.goto(host_site.serve("shop", embed_page(server, chat.talk_url)))

    launcher = page.get_by_role("button", name="Open chat")
    await expect(launcher).to_have_count(1)
    await expect(launcher).to_be_visible()
    box = await launcher.bounding_box()
    assert box is not None and box["x"] > 1280 / 2 and box["y"] > 800 / 2  # bottom right
    # no data-color: the colour comes from the chat page's botline:theme message
    await page.wait_for_function(
        "getComputedStyle(document.querySelector('[data-botline-embed]').shadowRoot"
        ".querySelector('.launcher')).backgroundColor === 'rgb(79, 70, 229)'")
    assert await page.evaluate("Object.keys(window).filter(k => /botline/i.test(k))") == ["BotlineEmbed"]

    await launcher.click()

    panel = page.locator("[data-botline-embed] .panel")
    await expect(page.get_by_role("dialog")).to_be_visible()
    frame = page.frame_locator("[data-botline-embed] iframe")
    await expect(frame.get_by_role("heading", name="Hi, how can we help?")).to_be_visible()
    await frame.get_by_role("button", name="Close chat").click()  # in the chat's own header
    await expect(panel).to_be_hidden()

    await page.get_by_role("button", name="Open chat").click()
    await expect(panel).to_be_visible()
    await frame.get_by_role("textbox").press("Escape")
    await expect(panel).to_be_hidden()

    await page.get_by_role("button", name="Open chat").click()
    await expect(panel).to_be_visible()
    await page.get_by_role("button", name="Close chat").click()  # the launcher, now a close button
    await expect(panel).to_be_hidden()
    await expect(page.get_by_role("button", name="Open chat")).to_be_visible()


async def test_the_embed_can_be_closed_even_when_the_chat_does_not_load(
    page: Page, open_chat: OpenChat, host_site: HostSite, server: RunningServer
) -> None:
    chat = await open_chat(allowedFrameOrigins=["https://elsewhere.example"])
    await page.goto(host_site.serve("refused", embed_page(server, chat.talk_url)))
    await page.get_by_role("button", name="Open chat").click()

    own_close = page.get_by_role("dialog").get_by_role("button", name="Close chat")
    await expect(own_close).to_be_visible()
    await own_close.click()
    await expect(page.locator("[data-botline-embed] .panel")).to_be_hidden()


async def test_the_embed_fills_a_phone_screen_and_keeps_its_own_colour(
    browser: Browser, open_chat: OpenChat, host_site: HostSite, server: RunningServer, fake_llm: FakeLLM
) -> None:
    chat = await open_chat(primaryColor="#4f46e5")
    url = host_site.serve("mobile", embed_page(server, chat.talk_url, 'data-color="#0f766e" data-position="left"'))
    # Reduced motion: the panel's opening transition is off, so its box is final when measured (a busy
    # machine could otherwise catch it mid-slide).
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, reduced_motion="reduce")
    try:
        page = await context.new_page()
        await page.goto(url)
        launcher = page.get_by_role("button", name="Open chat")
        box = await launcher.bounding_box()
        assert box is not None and box["x"] < PHONE["width"] / 2  # bottom left

        await launcher.click()
        frame = page.frame_locator("[data-botline-embed] iframe")
        await frame.get_by_role("textbox").fill("Hi")
        await frame.get_by_role("textbox").press("Enter")
        await expect(frame.get_by_role("article", name="Assistant")).to_contain_text("echo: Hi")

        panel = await page.get_by_role("dialog").bounding_box()
        assert panel == {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
        colour = await page.evaluate("getComputedStyle(document.querySelector('[data-botline-embed]').shadowRoot"
                                     ".querySelector('.launcher')).backgroundColor")
        assert colour == "rgb(15, 118, 110)"
        await expect(page.get_by_role("dialog").get_by_role("button", name="Close chat")).to_be_hidden()
        await frame.get_by_role("button", name="Close chat").click()
        await expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    finally:
        await context.close()
