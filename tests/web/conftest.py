"""Browser tests of the web chat: Debian's Chromium driven by playwright against a real botline.

One Chromium serves the whole folder (starting it costs about a second); every test still gets its
own browser context, botline (`server`) and fake LLM (`fake_llm`). Playwright's objects belong to the
event loop that made them, so these tests and their async fixtures run on the session loop: each
test module sets `pytestmark = SESSION_LOOP`, and `server`/`fake_llm` are redefined here with
that loop scope. The folder is skipped, with the reason shown, only where no Chromium exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer, free_port, make_settings, running_server

CHROMIUM = next(
    (path for path in ("/usr/bin/chromium", shutil.which("chromium")) if path and os.access(path, os.X_OK)), None
)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
WAIT_MS = 5000
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    if CHROMIUM is None:
        pytest.skip("browser tests need Chromium: none at /usr/bin/chromium or on PATH (apt-get install -y chromium)")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("browser tests need Chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="session")
async def server(tmp_path: Path, settings_overrides: dict[str, Any]) -> AsyncIterator[RunningServer]:
    """The chat pages live on their own origin, http://localhost:<port> (customScripts need one), while
    the tests call the API at http://127.0.0.1:<port>: one server, two origins, as behind a proxy."""
    port = free_port()
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", **settings_overrides)
    settings.webchat.chat_origin = f"http://localhost:{port}"
    async with running_server(settings, port=port) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@dataclass(frozen=True)
class WebChat:
    client_id: str
    access_key: str
    talk_url: str

    @property
    def api(self) -> str:
        return f"/api/v1/public/chat-clients/{self.access_key}"


CLIENT_DEFAULTS: dict[str, Any] = {
    "primaryColor": "#4f46e5",
    "pageTitle": "Acme Help",
    "helloLabel": "Hi, how can we help?",
    "helloSubLabel": "Ask anything about your Acme account.",
}

OpenChat = Callable[..., Awaitable[WebChat]]


@pytest.fixture
def open_chat(server: RunningServer, fake_llm: FakeLLM) -> OpenChat:
    """Creates a gateway on the fake LLM, a chat client with these clientParameters, and a session."""

    async def open_(limiting: dict[str, Any] | None = None, gateway: dict[str, Any] | None = None,
                    **client_parameters: Any) -> WebChat:
        gateway_id = await create_gateway(server, fake_llm, **(gateway or {}))
        status, created = await server.call("POST", "/api/v1/web-chat-client", json={
            "name": "Website", "aiGatewayId": gateway_id, "limitingParameters": limiting or {},
            "clientParameters": {**CLIENT_DEFAULTS, **client_parameters},
        })
        assert status == 200, created
        status, session = await server.call("POST", f"/api/v1/web-chat-client/{created['id']}/sessions", json={})
        assert status == 200, session
        return WebChat(client_id=created["id"], access_key=session["accessKey"], talk_url=session["talkUrl"])

    return open_


@dataclass
class HostSite:
    """Another origin (same host, another port) serving pages that embed the chat."""

    pages: dict[str, str]
    url: str = ""

    def serve(self, name: str, html: str) -> str:
        self.pages[name] = html
        return f"{self.url}/{name}"


@pytest_asyncio.fixture(loop_scope="session")
async def host_site() -> AsyncIterator[HostSite]:
    site = HostSite(pages={})

    async def handle(request: web.Request) -> web.Response:
        html = site.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    site.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield site
    finally:
        await runner.cleanup()


async def send(page: Page, text: str) -> None:
    """Types into the message box and presses Enter, as a person would."""
    box = page.get_by_role("textbox")
    await box.fill(text)
    await box.press("Enter")


def answers(page: Page) -> Locator:
    """The assistant's bubbles (the text a person reads), oldest first."""
    return page.get_by_role("article", name="Assistant").locator(".bl-bubble")


def questions(page: Page) -> Locator:
    """The person's own bubbles, oldest first."""
    return page.get_by_role("article", name="You").locator(".bl-bubble")
