"""Stop, retry and errors, as the person sees them and as the model sees them."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer
from tests.web.conftest import SESSION_LOOP, OpenChat, answers, questions, send

pytestmark = SESSION_LOOP

LONG_ANSWER = " ".join(f"word{i}" for i in range(300))


def user_messages(fake_llm: FakeLLM, index: int) -> list[object]:
    return [m["content"] for m in fake_llm.requests[index].body["messages"] if m["role"] == "user"]


async def test_stop_ends_the_answer_and_cancels_the_model(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM, server: RunningServer
) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text=LONG_ANSWER, chunk_delay=0.03))
    await page.goto(chat.talk_url)
    await send(page, "Count for me")
    await expect(answers(page)).to_contain_text("word3")

    await page.get_by_role("button", name="Stop").click()

    await expect(page.get_by_role("article", name="Assistant").get_by_text("Stopped")).to_be_visible()
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    await expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    await fake_llm.wait_for_cancelled(1)
    stopped_at = await answers(page).inner_text()
    await asyncio.sleep(0.3)  # a few more chunk intervals: nothing more arrives
    assert await answers(page).inner_text() == stopped_at
    assert "word3" in stopped_at and "word299" not in stopped_at

    status, body = await server.call("GET", chat.api)
    assert status == 200 and body["messages"][-1]["status"] == "cancelled"
    await page.reload()
    await expect(page.get_by_role("article", name="Assistant").get_by_text("Stopped")).to_be_visible()
    await expect(answers(page)).to_contain_text("word3")


async def test_retry_replaces_the_answer_without_repeating_the_question(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM, server: RunningServer
) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text="A first answer."), Reply(text="A better answer."))
    await page.goto(chat.talk_url)
    await send(page, "Tell me something")
    await expect(answers(page)).to_have_text("A first answer.")

    await page.get_by_role("button", name="Retry").click()

    await expect(answers(page)).to_have_text("A better answer.")
    await expect(questions(page)).to_have_text(["Tell me something"])
    await fake_llm.wait_for_requests(2)
    assert user_messages(fake_llm, 1) == ["Tell me something"]
    assert all(m["role"] != "assistant" for m in fake_llm.requests[1].body["messages"])
    status, body = await server.call("GET", chat.api)
    assert status == 200
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "Tell me something"), ("assistant", "A better answer.")]


async def test_a_model_failure_shows_inline_and_retry_recovers(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(status=500), Reply(text="Back on track."))
    await page.goto(chat.talk_url)
    await send(page, "Are you there?")

    error = page.get_by_role("alert")
    await expect(error).to_be_visible()
    assert (await error.inner_text()).strip()
    await expect(answers(page)).to_have_count(0)

    await error.get_by_role("button", name="Retry").click()

    await expect(answers(page)).to_have_text("Back on track.")
    await expect(page.get_by_role("alert")).to_have_count(0)
    await expect(questions(page)).to_have_text(["Are you there?"])
    assert user_messages(fake_llm, 1) == ["Are you there?"]


async def test_a_refused_prompt_shows_the_servers_reason(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat(limiting={"messagesPerHour": 1})
    fake_llm.script(Reply(text="One answer."))
    await page.goto(chat.talk_url)
    await send(page, "First")
    await expect(answers(page)).to_have_text("One answer.")

    await send(page, "Second")

    await expect(page.get_by_role("alert")).to_contain_text("1 message per hour")
    await expect(answers(page)).to_have_text(["One answer."])
    await expect(questions(page)).to_have_text(["First", "Second"])
    await send(page, "Third")  # the refused question was never stored: the new one takes its place
    await expect(questions(page)).to_have_text(["First", "Third"])
    await expect(page.get_by_role("alert")).to_contain_text("1 message per hour")
    assert len(fake_llm.requests) == 1


async def test_an_ended_session_says_so_and_locks_the_box(
    page: Page, open_chat: OpenChat, server: RunningServer
) -> None:
    chat = await open_chat()
    await page.goto(chat.talk_url)
    await expect(page.get_by_role("textbox")).to_be_enabled()
    status, sessions = await server.call("GET", f"/api/v1/web-chat-client/{chat.client_id}/sessions")
    assert status == 200, sessions
    [session] = sessions if isinstance(sessions, list) else sessions["sessions"]
    status, _ = await server.call("DELETE", f"/api/v1/web-chat-client/{chat.client_id}/sessions/{session['id']}")
    assert status == 200

    await send(page, "Still there?")

    await expect(page.get_by_role("alert")).to_contain_text("expired")
    await expect(page.get_by_role("textbox")).to_be_disabled()
    await expect(page.get_by_role("button", name="New conversation")).to_be_disabled()
    await page.reload()
    await expect(page.get_by_text("This chat link has expired or does not exist.")).to_be_visible()


async def test_new_conversation_while_answering_stops_and_starts_afresh(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text=LONG_ANSWER, chunk_delay=0.03), Reply(text="Fresh start."))
    await page.goto(chat.talk_url)
    await send(page, "Count for me")
    await expect(answers(page)).to_contain_text("word3")

    await page.get_by_role("button", name="New conversation").click()

    await expect(page.get_by_role("heading", name="Hi, how can we help?")).to_be_visible()
    await fake_llm.wait_for_cancelled(1)
    await expect(page.get_by_role("alert")).to_have_count(0)
    await send(page, "Hello again")
    await expect(answers(page)).to_have_text(["Fresh start."])
    await expect(questions(page)).to_have_text(["Hello again"])
    assert user_messages(fake_llm, 1) == ["Hello again"]
