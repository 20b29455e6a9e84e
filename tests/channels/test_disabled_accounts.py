"""M2 on the messaging side: a disabled account's bot is silent. Its webhooks are acknowledged and
their messages dropped, messages it had pending wait and are answered once it is re-enabled, its
scheduled continuations wait too, and Telegram long polling drops what it fetches meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from botline.accounts import create_account
from botline.domain.inbound import ChatKey
from botline.domain.integrations import IntegrationType
from tests.channels.conftest import store_of
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.telegram import TelegramEmulator
from tests.support.server import RunningServer
from tests.support.webchat import create_client

CHAT = 515151
QUIET_SECONDS = 0.5


@pytest.fixture
def settings_overrides(telegram: TelegramEmulator) -> dict[str, Any]:
    return {"providers": {"telegram": {"api_url": telegram.url, "mode": "webhook"}},
            "scheduler": {"min_delay_seconds": 1, "sync_interval_seconds": 0.2}}


async def tenant_bot(server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator,
                     **client_parameters: Any) -> tuple[str, str]:
    """A tenant account whose chat client answers on the emulator's Telegram bot: (account id, client id)."""
    issued = await create_account(store_of(server), name="Tenant")
    client_id = await create_client(server, fake_llm, key=issued.secret, **client_parameters)
    status, saved = await server.call("PUT", f"/api/v1/web-chat-client/{client_id}/integrations", key=issued.secret,
                                      json={"integrationType": "Telegram",
                                            "integrations": {"telegramIntegration": {"botToken": telegram.token}}})
    assert status == 200, saved
    return issued.record.account_id, client_id


async def set_disabled(server: RunningServer, account_id: str, disabled: bool) -> None:
    status, body = await server.call("PATCH", f"/api/v1/admin/accounts/{account_id}", json={"disabled": disabled})
    assert status == 200, body


async def quiet(telegram: TelegramEmulator, sent: int, seconds: float = QUIET_SECONDS) -> None:
    """No message beyond the `sent` ones within `seconds`."""
    with pytest.raises(TimeoutError):
        await telegram.wait_for_messages(sent + 1, timeout=seconds)


async def answered(server: RunningServer, chat: ChatKey) -> None:
    """Waits until the chat has nothing pending (its reply is marked answered right after it is sent)."""
    async with asyncio.timeout(5):
        while await store_of(server).inbound.pending(chat):
            await asyncio.sleep(0.02)


def chat_of(account_id: str, client_id: str) -> ChatKey:
    return ChatKey(account_id, client_id, IntegrationType.TELEGRAM, str(CHAT))


async def test_m2_a_disabled_accounts_webhook_is_acknowledged_and_its_message_dropped(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    account_id, client_id = await tenant_bot(server, fake_llm, telegram)
    await set_disabled(server, account_id, True)
    assert telegram.webhook is not None
    async with server.http.post(telegram.webhook.url, json=telegram.text_update(CHAT, "anyone there?"),
                                headers={"X-Telegram-Bot-Api-Secret-Token": telegram.webhook.secret_token}) as r:
        assert r.status == 200  # acknowledged: Telegram does not retry
        assert await r.json() == {"received": 0, "ignored": 1, "duplicates": 0}
    await quiet(telegram, 0)
    assert fake_llm.requests == []
    assert await store_of(server).inbound.pending(chat_of(account_id, client_id)) == []  # not recorded
    await set_disabled(server, account_id, False)
    await quiet(telegram, 0)  # never answered later by surprise
    assert fake_llm.requests == []
    assert await telegram.push(telegram.text_update(CHAT, "back?")) == 200
    [answer] = await telegram.wait_for_messages(1)
    assert answer["text"] == "echo: back?"


async def test_m2_pending_messages_wait_while_disabled_and_are_answered_on_re_enable(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    account_id, client_id = await tenant_bot(server, fake_llm, telegram, messageDebounceInterval="00:00:01")
    assert await telegram.push(telegram.text_update(CHAT, "recorded before the switch")) == 200
    await set_disabled(server, account_id, True)  # within the debounce: the turn has not run
    await quiet(telegram, 0, seconds=1.5)  # past the 1 s debounce: the worker looked and stood down
    assert fake_llm.requests == []
    [waiting] = await store_of(server).inbound.pending(chat_of(account_id, client_id))
    assert waiting.text == "recorded before the switch"
    await set_disabled(server, account_id, False)
    [answer] = await telegram.wait_for_messages(1, timeout=5)
    assert answer["text"] == "echo: recorded before the switch"
    assert len(fake_llm.requests) == 1
    await answered(server, chat_of(account_id, client_id))


async def test_m2_a_scheduled_activation_waits_while_disabled_and_is_delivered_after(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    account_id, client_id = await tenant_bot(server, fake_llm, telegram, allowScheduledContinuations=True)
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 1, "reason": "follow up"})]),
        Reply(text="I'll write back in a second."),
    )
    assert await telegram.push(telegram.text_update(CHAT, "follow up with me")) == 200
    await telegram.wait_for_messages(1)
    await set_disabled(server, account_id, True)
    await quiet(telegram, 1, seconds=2.0)  # well past the fire time, through several schedule syncs
    assert len(fake_llm.requests) == 2 and len(telegram.sent_messages()) == 1
    [item] = await store_of(server).schedules.list_for_client(account_id, client_id)
    assert item.activated_at is None and item.next_activation is not None and item.history == []  # pending
    fake_llm.script(Reply(text="Following up as promised."))
    await set_disabled(server, account_id, False)
    messages = await telegram.wait_for_messages(2, timeout=5)
    assert messages[1]["text"] == "Following up as promised."
    await quiet(telegram, 2)


class TestPolling:
    @pytest.fixture
    def settings_overrides(self, telegram: TelegramEmulator) -> dict[str, Any]:
        return {"providers": {"telegram": {"api_url": telegram.url, "mode": "polling"}}}

    async def test_m2_long_polling_drops_a_disabled_accounts_updates(
        self, server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
    ) -> None:
        account_id, _ = await tenant_bot(server, fake_llm, telegram)
        await set_disabled(server, account_id, True)
        telegram.queue_update(telegram.text_update(CHAT, "polled while off"))
        async with asyncio.timeout(5):
            while telegram.pending_update_count:  # fetched, and confirmed by the next poll
                await asyncio.sleep(0.02)
        await set_disabled(server, account_id, False)
        await quiet(telegram, 0)
        assert fake_llm.requests == []
        telegram.queue_update(telegram.text_update(CHAT, "polled after"))
        [answer] = await telegram.wait_for_messages(1, timeout=5)
        assert answer["text"] == "echo: polled after"
