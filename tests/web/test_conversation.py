"""Talking to the assistant: send, streaming, Shift+Enter, suggestions, history, new conversation."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer
from tests.web.conftest import SESSION_LOOP, OpenChat, answers, questions, send

STREAMED = "Our store opens at nine and closes at six on weekdays."
RECORD_ANSWER_TEXTS = """
window.answerTexts = [];
new MutationObserver(() => {
  const bubbles = document.querySelectorAll(".bl-msg--assistant .bl-bubble");
  if (bubbles.length) window.answerTexts.push(bubbles[bubbles.length - 1].innerText);
}).observe(document.querySelector("[role=log]"), {subtree: true, childList: true, characterData: true});
"""

pytestmark = SESSION_LOOP


async def test_an_answer_streams_in_piece_by_piece(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text=STREAMED, delay=0.3, chunk_delay=0.06))
    await page.goto(chat.talk_url)
    await expect(page).to_have_title("Acme Help")
    await expect(page.get_by_role("heading", name="Hi, how can we help?")).to_be_visible()

    await page.evaluate(RECORD_ANSWER_TEXTS)
    await send(page, "When do you open?")

    await expect(questions(page)).to_have_text("When do you open?")
    await expect(page.get_by_role("textbox")).to_have_value("")
    await expect(answers(page).get_by_text("Thinking...")).to_be_attached()
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()
    await expect(answers(page)).to_contain_text("Our store")
    await expect(answers(page)).to_have_text(STREAMED)
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    texts = [text.strip() for text in await page.evaluate("window.answerTexts")]
    seen = [text for text in texts if text not in ("", "Thinking...")]
    assert len(set(seen)) >= 3, seen  # it grew on screen, piece by piece
    assert all(STREAMED.startswith(text) for text in seen), seen
    assert seen[0] != STREAMED and seen[-1] == STREAMED
    assert fake_llm.requests[-1].body["messages"][-1] == {"role": "user", "content": "When do you open?"}


async def test_shift_enter_adds_a_new_line_and_enter_sends(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat()
    await page.goto(chat.talk_url)
    box = page.get_by_role("textbox", name="Type a message...")
    await box.type("first line")
    await box.press("Shift+Enter")
    await box.type("second line")

    await expect(box).to_have_value("first line\nsecond line")
    assert await questions(page).count() == 0 and fake_llm.requests == []

    await box.press("Enter")
    await expect(questions(page)).to_have_text("first line\nsecond line")
    await expect(answers(page)).to_have_text("echo: first line\nsecond line", use_inner_text=True)
    assert fake_llm.requests[-1].body["messages"][-1]["content"] == "first line\nsecond line"


async def test_a_suggestion_sends_its_prompt(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat(
        textAreaPlaceholder="Ask the Acme assistant",
        suggestionButtons=[{"label": "Opening hours", "prompt": "When are you open?"},
                           {"label": "Returns", "prompt": "How do I return an item?"}],
    )
    fake_llm.script(Reply(text="From **9 to 6**, Monday to Friday."))
    await page.goto(chat.talk_url)
    await expect(page.get_by_text("Ask anything about your Acme account.")).to_be_visible()
    await expect(page.get_by_role("textbox", name="Ask the Acme assistant")).to_be_visible()

    await page.get_by_role("button", name="Opening hours").click()

    await expect(questions(page)).to_have_text("When are you open?")
    await expect(answers(page).locator("strong")).to_have_text("9 to 6")
    await expect(page.get_by_role("heading", name="Hi, how can we help?")).to_be_hidden()
    await expect(page.get_by_role("button", name="Returns")).to_be_hidden()
    assert fake_llm.requests[-1].body["messages"][-1] == {"role": "user", "content": "When are you open?"}


async def test_history_is_still_there_after_a_reload(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    chat = await open_chat()
    fake_llm.script(Reply(text="- red\n- green"), Reply(text="Blue, then."))
    await page.goto(chat.talk_url)
    await send(page, "Name two colours")
    await expect(answers(page).locator("li")).to_have_text(["red", "green"])
    await send(page, "And another?")
    await expect(answers(page).nth(1)).to_have_text("Blue, then.")

    await page.reload()

    await expect(questions(page)).to_have_text(["Name two colours", "And another?"])
    await expect(answers(page).first.locator("li")).to_have_text(["red", "green"])
    await expect(answers(page).nth(1)).to_have_text("Blue, then.")
    await expect(page.get_by_role("heading", name="Hi, how can we help?")).to_be_hidden()
    await expect(page.get_by_role("log", name="Messages")).to_be_visible()


async def test_new_conversation_empties_the_chat(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM, server: RunningServer
) -> None:
    chat = await open_chat()
    await page.goto(chat.talk_url)
    await send(page, "Remember this")
    await expect(answers(page)).to_have_text("echo: Remember this")

    await page.get_by_role("button", name="New conversation").click()

    await expect(page.get_by_role("heading", name="Hi, how can we help?")).to_be_visible()
    await expect(questions(page)).to_have_count(0)
    await expect(answers(page)).to_have_count(0)
    status, body = await server.call("GET", chat.api)
    assert status == 200 and body["messages"] == []
    await page.reload()
    await expect(page.get_by_role("heading", name="Hi, how can we help?")).to_be_visible()


async def test_the_transcript_downloads(page: Page, open_chat: OpenChat) -> None:
    chat = await open_chat()
    await page.goto(chat.talk_url)
    await send(page, "Keep a copy")
    await expect(answers(page)).to_have_text("echo: Keep a copy")

    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download transcript").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("transcript")
    content = (await download.path()).read_text() if await download.path() else ""
    assert "Keep a copy" in content and "echo: Keep a copy" in content


async def test_tool_activity_shows_when_show_tool_calls_is_on(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        weather = {
            "name": "get_weather", "description": "Weather forecast for a city.",
            "callbackUrl": site.answer("/weather", Answer(body="Sunny, 24C")),
            "contentFormat": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
        chat = await open_chat(showToolCalls=True, gateway={"protocolFunctions": [weather]})
        fake_llm.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Lisbon"})]),
                        Reply(text="It is sunny in Lisbon."))
        await page.goto(chat.talk_url)
        await send(page, "Weather in Lisbon?")

        assistant = page.get_by_role("article", name="Assistant")
        await expect(answers(page)).to_have_text("It is sunny in Lisbon.")
        await expect(assistant.get_by_text("Used get_weather")).to_be_visible()
        assert len(site.received_at("/weather")) == 1


async def test_tool_activity_shows_the_models_reason_with_tool_invocation_explanations(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        weather = {
            "name": "get_weather", "description": "Weather forecast for a city.",
            "callbackUrl": site.answer("/weather", Answer(body="Sunny, 24C")),
            "contentFormat": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                              "additionalProperties": False},
        }
        chat = await open_chat(showToolCalls=True, gateway={"protocolFunctions": [weather],
                                                             "toolInvocationExplanations": True})
        fake_llm.script(Reply(tool_calls=[ToolCall("get_weather", {
            "city": "Lisbon", "invocation_explanation": "You asked about the weather in Lisbon."})]),
            Reply(text="It is sunny in Lisbon."))
        await page.goto(chat.talk_url)
        await send(page, "Weather in Lisbon?")

        assistant = page.get_by_role("article", name="Assistant")
        await expect(answers(page)).to_have_text("It is sunny in Lisbon.")
        await expect(assistant.get_by_text("Used get_weather")).to_be_visible()
        await expect(assistant.get_by_text("You asked about the weather in Lisbon.")).to_be_visible()
        [called] = site.received_at("/weather")
        assert called.json()["function"]["content"] == {"city": "Lisbon"}


async def test_custom_styles_and_scripts_apply_and_debug_logs_events(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat(
        debug=True, customStyles=".bl-title { color: rgb(200, 0, 0); }",
        customScripts="document.addEventListener('botline:ready', () => { window.customReady = true; });",
    )
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    await page.goto(chat.talk_url)
    await expect(page.get_by_role("heading", name="Acme Help")).to_have_css("color", "rgb(200, 0, 0)")
    assert await page.evaluate("window.customReady") is True

    async with page.expect_console_message(lambda message: message.text.startswith("[botline] done")):
        await send(page, "Log this")  # the done event may be logged just after the text is shown
    await expect(answers(page)).to_have_text("echo: Log this")
    assert any(text.startswith("[botline] delta") for text in logged), logged
