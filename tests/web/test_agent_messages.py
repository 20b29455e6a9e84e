"""An agent answering through the API appears on the open chat page at once, with the agent's name,
long before the page's poll would have fetched it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer
from tests.web.conftest import SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP

POLL_SECONDS = 600
"""The poll would take ten minutes: whatever shows up sooner was pushed."""
PUSHED_MS = 3000


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"webchat": {"poll_seconds": POLL_SECONDS}}


async def test_an_agent_message_appears_on_the_open_page_without_waiting_for_the_poll(
    page: Page, open_chat: OpenChat, server: RunningServer, fake_llm: FakeLLM
) -> None:
    chat = await open_chat()
    async with page.expect_response(lambda response: response.url.endswith("/events")):
        await page.goto(chat.talk_url)  # the page listens once the stream's headers arrived
    await send(page, "I need help with my invoice")
    await expect(answers(page).first).to_have_text("echo: I need help with my invoice")
    status, transcript = await server.call("GET", chat.api + "/transcript.json")
    assert status == 200

    status, body = await server.call(
        "POST", f"/api/v1/web-chat-client/{chat.client_id}/sessions/{transcript['sessionId']}/messages",
        json={"content": "Hi, this is Paula from billing. Let me check that for you.", "agent": "Paula"})
    assert status == 200, body

    agent_bubble = answers(page).nth(1)
    await expect(agent_bubble).to_have_text("Hi, this is Paula from billing. Let me check that for you.",
                                            timeout=PUSHED_MS)
    await expect(page.locator(".bl-agent")).to_have_text("Paula")
