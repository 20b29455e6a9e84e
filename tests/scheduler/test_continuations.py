"""Scheduled continuations end to end, in real time: the fake LLM schedules through the real tools,
botline fires through the real channel (the Telegram emulator), across restarts and replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from botline.app import STORE
from botline.config import Settings
from tests.conftest import gateway_body
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.telegram import TelegramEmulator
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import client_body

CHAT = 777


def settings_for(storage_url: str, telegram: TelegramEmulator, **scheduler: Any) -> Settings:
    return make_settings(
        storage_url,
        providers={"telegram": {"api_url": telegram.url, "mode": "webhook"}},
        scheduler={"min_delay_seconds": 1, "sync_interval_seconds": 0.3, **scheduler},
        llm={"max_retries": 0},
    )


async def telegram_client(server: RunningServer, fake: FakeLLM, telegram: TelegramEmulator,
                          **parameters: Any) -> tuple[str, str]:
    """A chat client with continuations on, connected to the emulator's bot: (client id, webhook URL)."""
    _, gateway = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake))
    body = client_body(gateway["aiGatewayId"], allowScheduledContinuations=True, **parameters)
    _, client = await server.call("POST", "/api/v1/web-chat-client", json=body)
    status, saved = await server.call("PUT", f"/api/v1/web-chat-client/{client['id']}/integrations", json={
        "integrationType": "Telegram", "integrations": {"telegramIntegration": {"botToken": telegram.token}}})
    assert status == 200, saved
    return client["id"], saved["webhookUrl"]


async def say(server: RunningServer, telegram: TelegramEmulator, webhook_url: str, text: str) -> None:
    """The user writes: the update goes to this server's webhook, as Telegram would send it."""
    assert telegram.webhook is not None
    async with server.http.post(webhook_url, json=telegram.text_update(CHAT, text),
                                headers={"X-Telegram-Bot-Api-Secret-Token": telegram.webhook.secret_token}) as r:
        assert r.status == 200


async def no_more_messages(telegram: TelegramEmulator, count: int, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await telegram.wait_for_messages(count + 1, timeout=seconds)


async def test_a_one_shot_survives_a_restart_and_fires_once(
    tmp_path: Path, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", telegram)
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 3, "reason": "check on the user",
                                                        "context": "order 42 was late"})]),
        Reply(text="I'll check on you in a moment."),
    )
    async with running_server(settings) as first:
        client_id, webhook_url = await telegram_client(first, fake_llm, telegram)
        await say(first, telegram, webhook_url, "check on me in a bit")
        [ack] = await telegram.wait_for_messages(1, timeout=5)
        assert ack["text"] == "I'll check on you in a moment."
        offered = [t["function"]["name"] for t in fake_llm.requests[0].body["tools"]]
        assert offered == ["schedule_message", "schedule_recurring_task", "list_schedules", "cancel_schedule"]
    fake_llm.script(Reply(text="Hi again! Any news on order 42?"))
    async with running_server(settings) as second:  # stopped and started again before the fire time
        messages = await telegram.wait_for_messages(2, timeout=10)
        assert messages[1]["text"] == "Hi again! Any news on order 42?" and str(messages[1]["chat_id"]) == str(CHAT)
        await no_more_messages(telegram, 2, 1.0)
        note = fake_llm.requests[-1].body["messages"][-1]
        assert note["role"] == "system" and note["content"].startswith("[Scheduled continuation] reason: check on")
        assert "context: order 42 was late" in note["content"]
        status, listing = await second.call("GET", f"/api/v1/web-chat-clients/{client_id}/hook-schedules")
        assert status == 200 and listing["webChat"]["id"] == client_id
        [item] = listing["schedules"]
        assert item["externalUserId"] == f"Telegram:{CHAT}" and item["target"] == "Telegram"
        assert item["targetIdentifier"] == str(CHAT) and item["activatedAt"] is not None
        assert listing["recurringTasks"] == []
        assert [u["externalUserId"] for u in listing["inactiveUsers"]] == [f"Telegram:{CHAT}"]
        _, detail = await second.call(
            "GET", f"/api/v1/web-chat-clients/{client_id}/hook-schedules/schedules/{item['id']}")
        assert detail["activationResult"] == "Hi again! Any news on order 42?"
        assert detail["activatedSessionId"] and detail["reason"] == "check on the user"


async def test_a_recurring_task_stops_at_max_executions(
    tmp_path: Path, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", telegram, allow_seconds_in_cron=True,
                            min_cron_interval_seconds=0)
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_recurring_task", {  # croniter: a 6th field is seconds
            "cronExpression": "* * * * * */2", "jobDescription": "say tick", "reason": "test", "maxExecutions": 2})]),
        Reply(text="Scheduled."), Reply(text="tick 1"), Reply(text="tick 2"), Reply(text="tick 3"),
    )
    async with running_server(settings) as server:
        client_id, webhook_url = await telegram_client(server, fake_llm, telegram)
        await say(server, telegram, webhook_url, "tick every 2 seconds, twice")
        texts = [m["text"] for m in await telegram.wait_for_messages(3, timeout=20)]
        assert texts == ["Scheduled.", "tick 1", "tick 2"]
        await no_more_messages(telegram, 3, 3.0)
        _, listing = await server.call("GET", f"/api/v1/web-chat-clients/{client_id}/hook-schedules")
        [task] = listing["recurringTasks"]
        assert task["executionCount"] == 2 and task["nextActivation"] is None
        _, detail = await server.call(
            "GET", f"/api/v1/web-chat-clients/{client_id}/hook-schedules/recurring/{task['id']}")
        assert detail["maxExecutions"] == 2 and detail["status"] == "done" and len(detail["history"]) == 2


async def test_guards_answer_the_model_with_short_errors(
    tmp_path: Path, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", telegram, min_delay_seconds=60)
    bad_calls = [
        ("schedule_message", {"delaySeconds": 5, "reason": "r"}, "at least 60 seconds"),
        ("schedule_message", {"when": "next friday", "reason": "r"}, "not an ISO-8601"),
        ("schedule_message", {"reason": "r"}, "exactly one of when or delaySeconds"),
        ("schedule_recurring_task", {"cronExpression": "* * * * *", "jobDescription": "j", "reason": "r"},
         "at most every 5 minutes"),
        ("schedule_recurring_task", {"cronExpression": "0 9 * * *", "timezone": "Mars/Base", "jobDescription": "j",
                                     "reason": "r"}, "Unknown time zone"),
        ("schedule_recurring_task", {"cronExpression": "0 25 * * *", "jobDescription": "j", "reason": "r"},
         "not a valid cron"),
        ("cancel_schedule", {"id": "someone-elses"}, "No active schedule"),
    ]
    fake_llm.script(*[Reply(tool_calls=[ToolCall(name, args)]) for name, args, _ in bad_calls], Reply(text="ok"))
    async with running_server(settings) as server:
        client_id, webhook_url = await telegram_client(server, fake_llm, telegram)
        await say(server, telegram, webhook_url, "try everything")
        await telegram.wait_for_messages(1, timeout=10)
        results = [m["content"] for m in fake_llm.requests[-1].body["messages"] if m["role"] == "tool"]
        for (_, _, expected), result in zip(bad_calls, results, strict=True):
            assert expected in result
        _, listing = await server.call("GET", f"/api/v1/web-chat-clients/{client_id}/hook-schedules")
        assert listing["schedules"] == [] and listing["recurringTasks"] == []


async def test_tools_are_offered_only_where_continuations_are_allowed(
    tmp_path: Path, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", telegram)
    async with running_server(settings) as server:
        _, gateway = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm))
        _, client = await server.call("POST", "/api/v1/web-chat-client", json=client_body(gateway["aiGatewayId"]))
        _, session = await server.call("POST", f"/api/v1/web-chat-client/{client['id']}/sessions", json={})
        await server.call("POST", f"/api/v1/public/chat-clients/{session['accessKey']}/prompt",
                          json={"prompt": {"role": "user", "content": "hi"}})
        assert "tools" not in fake_llm.requests[-1].body
        await server.call("PUT", f"/api/v1/web-chat-client/{client['id']}",
                          json={"clientParameters": {"allowScheduledContinuations": True}})
        await server.call("POST", f"/api/v1/public/chat-clients/{session['accessKey']}/prompt",
                          json={"prompt": {"role": "user", "content": "hi again"}})
        assert len(fake_llm.requests[-1].body["tools"]) == 4
        client_api = {"model": gateway["aiGatewayId"], "messages": [{"role": "user", "content": "x"}], "user": "u"}
        await server.call("POST", "/v1/chat/completions", json=client_api)
        assert "tools" not in fake_llm.requests[-1].body  # /v1 has no deliverable target


async def test_a_web_chat_continuation_is_appended_to_the_session(
    tmp_path: Path, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", telegram)
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 1, "reason": "remind to drink water"})]),
        Reply(text="Sure, in a second."), Reply(text="Time to drink some water!"),
    )
    async with running_server(settings) as server:
        _, gateway = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm))
        body = client_body(gateway["aiGatewayId"], allowScheduledContinuations=True)
        _, client = await server.call("POST", "/api/v1/web-chat-client", json=body)
        _, session = await server.call("POST", f"/api/v1/web-chat-client/{client['id']}/sessions", json={"tag": "ana"})
        key = session["accessKey"]
        await server.call("POST", f"/api/v1/public/chat-clients/{key}/prompt",
                          json={"prompt": {"role": "user", "content": "remind me to drink water"}})
        for _ in range(60):  # bounded wait for the firing (real time)
            _, info = await server.call("GET", f"/api/v1/public/chat-clients/{key}")
            if len(info["messages"]) == 3:
                break
            await asyncio.sleep(0.1)
        assert [m["content"] for m in info["messages"]] == [
            "remind me to drink water", "Sure, in a second.", "Time to drink some water!"]


async def test_a_follow_up_due_while_a_person_has_the_chat_is_skipped_and_recorded(
    tmp_path: Path, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", telegram)
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 2, "reason": "check on the user"})]),
        Reply(text="I'll check on you shortly."),
    )
    async with running_server(settings) as server:
        client_id, webhook_url = await telegram_client(server, fake_llm, telegram)
        await say(server, telegram, webhook_url, "check on me in a bit")
        await telegram.wait_for_messages(1, timeout=5)
        _, sessions = await server.call("GET", f"/api/v1/web-chat-client/{client_id}/sessions")
        status, body = await server.call(
            "POST", f"/api/v1/web-chat-client/{client_id}/sessions/{sessions[0]['id']}/handoff",
            json={"reason": "refund dispute", "agent": "Paula"})
        assert status == 200 and body["handoff"]["state"] == "human", body
        assert server.app is not None
        store = server.app[STORE]
        client = await store.chat_clients.find(client_id)
        assert client is not None
        async with asyncio.timeout(10):
            while True:
                [item] = await store.schedules.list_for_client(client.account_id, client_id)
                if item.activation_result:
                    break
                await asyncio.sleep(0.1)
        assert item.activation_result == "skipped: a person is handling this chat"
        assert [a.outcome.value for a in item.history] == ["skipped"]
        await no_more_messages(telegram, 1, 0.3)
        assert len(fake_llm.requests) == 2  # the scheduling turn only: the model was not asked again
