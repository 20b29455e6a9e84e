"""Spoken answers in the web chat: the text first, then a player whose audio is the fake speech endpoint's
(decoded by Chromium), a mute toggle remembered by the browser and usable from the keyboard, at 375 px."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.web.conftest import PHONE, SESSION_LOOP, OpenChat, answers, send

pytestmark = SESSION_LOOP

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "chat-375-voice.png"
AUDIO_STATE = """() => { const a = document.querySelector('.bl-audio audio');
  return a ? {ready: a.readyState, duration: a.duration, hidden: a.parentElement.hidden} : null; }"""


async def test_the_answer_has_a_player_with_the_spoken_audio(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat(audioSynthesisSource="Gpt4oTts")
    fake_llm.script(Reply(text="We open at **nine**."))
    fake_llm.script_speech(Reply(delay=0.4))
    await page.goto(chat.talk_url)
    await send(page, "When do you open?")
    await expect(answers(page)).to_have_text("We open at nine.")
    player = page.get_by_label("Spoken answer", exact=True)
    await expect(player).to_be_attached()
    assert (await page.evaluate(AUDIO_STATE))["ready"] == 0  # the text is on screen before any audio
    await page.wait_for_function("() => document.querySelector('.bl-audio audio').readyState >= 1")
    state = await page.evaluate(AUDIO_STATE)
    assert abs(state["duration"] - 1.0) < 0.1, state  # the fake's one-second MP3, decoded by Chromium
    [speech] = fake_llm.speech_requests()
    assert speech.body["input"] == "We open at nine." and speech.body["response_format"] == "mp3"


async def test_mute_is_remembered_and_works_from_the_keyboard(
    page: Page, open_chat: OpenChat, fake_llm: FakeLLM
) -> None:
    chat = await open_chat(audioSynthesisSource="Gpt4oTts")
    await page.goto(chat.talk_url)
    mute = page.get_by_role("button", name="Mute spoken answers")
    await mute.focus()
    await page.keyboard.press("Enter")
    unmute = page.get_by_role("button", name="Play spoken answers")
    await expect(unmute).to_have_attribute("aria-pressed", "true")
    await page.reload()
    await expect(page.get_by_role("button", name="Play spoken answers")).to_be_visible()  # remembered
    await send(page, "hello")
    await expect(answers(page)).to_have_text("echo: hello")
    assert await page.evaluate(AUDIO_STATE) is None and fake_llm.speech_requests() == []  # nothing fetched
    await page.get_by_role("button", name="Play spoken answers").focus()
    await page.keyboard.press("Space")
    await expect(page.get_by_label("Spoken answer", exact=True)).to_be_attached()  # the answer's player, not preloaded
    assert fake_llm.speech_requests() == []


async def test_the_player_fits_a_375_px_phone(page: Page, open_chat: OpenChat, fake_llm: FakeLLM) -> None:
    await page.set_viewport_size(PHONE)
    chat = await open_chat(audioSynthesisSource="Gpt4oTts")
    fake_llm.script(Reply(text="Your order **#1042** ships tomorrow; you will get a tracking link by email."))
    await page.goto(chat.talk_url)
    await send(page, "Where is my order?")
    await page.wait_for_function("() => { const a = document.querySelector('.bl-audio audio'); "
                                 "return a && a.readyState >= 1; }")
    await page.evaluate("() => document.querySelector('.bl-audio audio').pause()")
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    box = await page.get_by_label("Spoken answer", exact=True).bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    await page.screenshot(path=str(SCREENSHOT), animations="disabled", caret="hide")
