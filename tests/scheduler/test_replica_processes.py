"""Three `botline serve` processes on one Redis: each scheduled activation is delivered once."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.telegram import TelegramEmulator
from tests.support.processes import botline_process
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import ADMIN_KEY

CHAT = 31337


async def test_each_activation_is_delivered_once_by_three_processes(tmp_path: Path, redis_url: str) -> None:
    prefix = unique_prefix()
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake, TelegramEmulator(time_scale=0.01) as telegram:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"storage:\n  url: {redis_url}\n  redis_prefix: {prefix}\n"
            f"auth:\n  admin_keys: [{ADMIN_KEY}]\n"
            f"providers:\n  telegram:\n    api_url: {telegram.url}\n    mode: webhook\n"
            "scheduler:\n  min_delay_seconds: 1\n  sync_interval_seconds: 0.3\n"
            f"gateways:\n  - name: main\n    parameters:\n      baseAddress: {fake.base_url}\n"
            f"      apiKey: {UPSTREAM_KEY}\n      modelName: fake-model\n"
        )
        fake.script(
            Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 3, "reason": "follow up"})]),
            Reply(text="Will do."), Reply(text="Following up, as promised."), Reply(text="a duplicate!"),
        )
        try:
            async with AsyncExitStack() as stack:
                urls = [(await stack.enter_async_context(botline_process(config))).url for _ in range(3)]
                http = await stack.enter_async_context(
                    aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}))
                async with http.get(urls[0] + "/v1/models") as response:
                    gateway_id = (await response.json())["data"][0]["id"]
                client = {"name": "Bot", "aiGatewayId": gateway_id, "clientParameters": {
                    "primaryColor": "#0088cc", "pageTitle": "Bot", "allowScheduledContinuations": True}}
                async with http.post(urls[1] + "/api/v1/web-chat-client", json=client) as response:
                    client_id = (await response.json())["id"]
                integration = {"integrationType": "Telegram",
                               "integrations": {"telegramIntegration": {"botToken": telegram.token}}}
                async with http.put(f"{urls[2]}/api/v1/web-chat-client/{client_id}/integrations",
                                    json=integration) as response:
                    assert response.status == 200
                assert await telegram.push(telegram.text_update(CHAT, "follow up with me")) == 200
                messages = await telegram.wait_for_messages(2, timeout=15)
                assert [m["text"] for m in messages] == ["Will do.", "Following up, as promised."]
                with pytest.raises(TimeoutError):
                    await telegram.wait_for_messages(3, timeout=1.5)
        finally:
            await delete_prefix(redis_url, prefix)
