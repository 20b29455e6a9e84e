"""A follow-up the assistant scheduled appears on a chat page that is already open."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.web.conftest import SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"scheduler": {"min_delay_seconds": 1, "sync_interval_seconds": 0.3}, "webchat": {"poll_seconds": 0.5}}


async def test_a_scheduled_message_appears_without_a_reload(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat(allowScheduledContinuations=True)
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 1, "reason": "stretch reminder"})]),
        Reply(text="I'll remind you in a second."),
        Reply(text="Time to stand up and stretch!"),
    )
    await page.goto(chat.talk_url)
    await send(page, "remind me to stretch")
    await expect(answers(page).first).to_have_text("I'll remind you in a second.")
    await expect(answers(page)).to_have_count(2, timeout=10_000)
    await expect(answers(page).last).to_have_text("Time to stand up and stretch!")
