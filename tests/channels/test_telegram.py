"""Telegram end to end: the emulator speaks the Bot API, botline reaches it through python-telegram-bot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.channels.conftest import connect_telegram, last_user_text, session_of
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.telegram import TelegramEmulator
from tests.support.server import RunningServer

CHAT = 424242
QUIET_SECONDS = 0.3


@pytest.fixture
def settings_overrides(telegram: TelegramEmulator) -> dict[str, Any]:
    return {"providers": {"telegram": {"api_url": telegram.url, "mode": "webhook"}}}


async def no_more_messages(telegram: TelegramEmulator, count: int) -> None:
    with pytest.raises(TimeoutError):
        await telegram.wait_for_messages(count + 1, timeout=QUIET_SECONDS)


async def test_saving_registers_the_webhook_with_its_secret(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    channel = await connect_telegram(server, fake_llm, telegram)
    assert channel.saved["registration"] == {"mode": "webhook", "error": None}
    assert telegram.webhook is not None and telegram.webhook.url == channel.webhook_url
    assert telegram.webhook.secret_token
    _, view = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}")
    shown = view["integrations"]["telegramIntegration"]
    assert shown["botToken"] == "********" and shown["webhookSecret"] == "********"
    assert telegram.token not in str(view) and telegram.webhook.secret_token not in str(view)


async def test_a_message_gets_one_reply_and_a_typing_indicator(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram)
    fake_llm.script(Reply(text="Hi Ana!", delay=0.2))
    update = telegram.text_update(CHAT, "hello")
    assert await telegram.push(update) == 200
    [sent] = await telegram.wait_for_messages(1)
    assert str(sent["chat_id"]) == str(CHAT) and sent["text"] == "Hi Ana!"
    assert [a["action"] for a in telegram.chat_actions(CHAT)][:1] == ["typing"]
    assert await telegram.push(update) == 200  # Telegram re-delivers the same update
    await no_more_messages(telegram, 1)
    assert len(fake_llm.requests) == 1


async def test_wrong_secret_or_token_is_rejected_and_nothing_is_answered(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    channel = await connect_telegram(server, fake_llm, telegram)
    update = telegram.text_update(CHAT, "hello")
    async with server.http.post(channel.webhook_url, json=update,
                                headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}) as response:
        assert response.status == 401
    async with server.http.post(channel.webhook_url, json=update) as response:
        assert response.status == 401
    async with server.http.post(channel.with_token("x" * 32), json=update,
                                headers={"X-Telegram-Bot-Api-Secret-Token": telegram.webhook.secret_token}) as response:
        assert response.status == 404
    await no_more_messages(telegram, 0)
    assert fake_llm.requests == []


async def test_a_burst_inside_the_debounce_window_is_one_turn(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram, messageDebounceInterval="00:00:01")
    for text in ("hi", "I need help", "with my order"):
        assert await telegram.push(telegram.text_update(CHAT, text)) == 200
    await telegram.wait_for_messages(1, timeout=5)
    await no_more_messages(telegram, 1)
    assert len(fake_llm.requests) == 1
    assert last_user_text(fake_llm) == "hi\nI need help\nwith my order"


async def test_groups_answer_only_when_mentioned_or_replied_to(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram)
    group = {"chat_type": "group", "title": "Team"}
    await telegram.push(telegram.text_update(-100, "talking among ourselves", **group))
    await no_more_messages(telegram, 0)
    await telegram.push(telegram.text_update(-100, f"@{telegram.bot_user['username']} what time is it?", **group))
    [answer] = await telegram.wait_for_messages(1)
    await telegram.push(telegram.text_update(-100, "and tomorrow?", reply_to=answer["message_id"], **group))
    await telegram.wait_for_messages(2)
    assert [last_user_text(fake_llm, i) for i in range(2)] == [
        f"@{telegram.bot_user['username']} what time is it?", "and tomorrow?"]


async def test_bots_are_never_answered(server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator) -> None:
    await connect_telegram(server, fake_llm, telegram)
    update = telegram.text_update(CHAT, "beep")
    update["message"]["from"]["is_bot"] = True
    assert await telegram.push(update) == 200
    await no_more_messages(telegram, 0)


async def test_a_long_answer_is_split_under_4096_without_breaking_code(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram)
    code = "```python\n" + "\n".join(f"print({n})" for n in range(200)) + "\n```"
    answer = "x" * 3000 + "\n\n" + code + "\n\n" + "y" * 3000
    fake_llm.script(Reply(text=answer))
    await telegram.push(telegram.text_update(CHAT, "long please"))
    messages = await telegram.wait_for_messages(3, timeout=5)
    texts = [m["text"] for m in messages]
    assert all(len(t.encode("utf-16-le")) // 2 <= 4096 for t in texts)
    assert texts[1] == code and "\n\n".join(texts) == answer


async def test_a_429_with_retry_after_is_honoured(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram)
    telegram.fail_next("sendMessage", 429, retry_after=1)
    started = asyncio.get_running_loop().time()
    await telegram.push(telegram.text_update(CHAT, "hello"))
    [sent] = await telegram.wait_for_messages(1, timeout=5)
    assert asyncio.get_running_loop().time() - started >= 1.0
    assert sent["text"] == "echo: hello"
    await no_more_messages(telegram, 1)


async def test_reset_and_usage_commands(server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator) -> None:
    channel = await connect_telegram(server, fake_llm, telegram, debug=True)
    await telegram.push(telegram.text_update(CHAT, "remember me"))
    await telegram.wait_for_messages(1)
    await telegram.push(telegram.text_update(CHAT, "/usage"))
    usage = (await telegram.wait_for_messages(2))[-1]["text"]
    assert "tokens" in usage and "2 messages" in usage
    await telegram.push(telegram.text_update(CHAT, "/reset"))
    assert (await telegram.wait_for_messages(3))[-1]["text"] == "Done: this conversation was cleared."
    assert await session_of(server, channel.client_id, f"Telegram:{CHAT}") is None
    await telegram.push(telegram.text_update(CHAT, "fresh start"))
    await telegram.wait_for_messages(4)
    user_turns = [m for m in fake_llm.requests[-1].body["messages"] if m["role"] == "user"]
    assert [m["content"] for m in user_turns] == ["fresh start"]


async def test_a_photo_reaches_the_model_as_an_image(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram, inputModes=["Image"])
    await telegram.push(telegram.photo_update(CHAT, b"\xff\xd8\xff fake jpeg", caption="what is this?"))
    await telegram.wait_for_messages(1)
    content = [m for m in fake_llm.requests[0].body["messages"] if m["role"] == "user"][-1]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


class TestPolling:
    @pytest.fixture
    def settings_overrides(self, telegram: TelegramEmulator) -> dict[str, Any]:
        return {"providers": {"telegram": {"api_url": telegram.url, "mode": "auto"}}}  # the test server is local

    async def test_without_a_public_url_updates_are_long_polled(
        self, server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
    ) -> None:
        channel = await connect_telegram(server, fake_llm, telegram)
        assert channel.saved["registration"] == {"mode": "polling", "error": None}
        telegram.queue_update(telegram.text_update(CHAT, "polled hello"))
        [sent] = await telegram.wait_for_messages(1, timeout=10)
        assert sent["text"] == "echo: polled hello"
        telegram.queue_update(telegram.text_update(CHAT, "second"))
        await telegram.wait_for_messages(2, timeout=10)
        await no_more_messages(telegram, 2)  # confirmed updates are never fetched again
