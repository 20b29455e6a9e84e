"""kill -9 during a turn, then a restart: the message is answered, exactly once.

botline runs as a real child process here (the same `botline serve` a user runs), so the kill is a
real SIGKILL: no cleanup code runs. The provider is Z-API's emulator, the model the fake LLM.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.zapi import FakeZapi
from tests.support.processes import botline_process
from tests.support.server import ADMIN_KEY, free_port

PHONE = "5511988887777"


def write_config(tmp_path: Path, fake: FakeLLM, zapi: FakeZapi) -> Path:
    """SQLite in tmp_path, the admin key, Z-API at the emulator and one gateway `main` on the fake LLM."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"storage:\n  url: sqlite:///{tmp_path / 'botline.db'}\n"
        f"auth:\n  admin_keys: [{ADMIN_KEY}]\n"
        f"providers:\n  zapi:\n    api_url: {zapi.url}\n"
        f"gateways:\n  - name: main\n    parameters:\n      baseAddress: {fake.base_url}\n"
        f"      apiKey: {UPSTREAM_KEY}\n      modelName: fake-model\n"
    )
    return config


async def connect_zapi(http: aiohttp.ClientSession, url: str, zapi: FakeZapi) -> str:
    """A chat client on the declared gateway with the emulator's Z-API instance; its webhook URL."""
    async with http.get(url + "/v1/models") as response:
        gateway_id = (await response.json())["data"][0]["id"]
    client = {"name": "WhatsApp", "aiGatewayId": gateway_id,
              "clientParameters": {"primaryColor": "#25d366", "pageTitle": "Support"}}
    async with http.post(url + "/api/v1/web-chat-client", json=client) as response:
        client_id = (await response.json())["id"]
    integration = {"integrationType": "Zapi", "integrations": {"zapiIntegration": {
        "instanceId": zapi.instance_id, "instanceToken": zapi.instance_token}}}
    async with http.put(f"{url}/api/v1/web-chat-client/{client_id}/integrations", json=integration) as response:
        return str((await response.json())["webhookUrl"])


async def test_a_kill_during_the_turn_and_a_restart_reply_exactly_once(tmp_path: Path) -> None:
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake, FakeZapi() as zapi:
        config = write_config(tmp_path, fake, zapi)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        fake.script(Reply(text="never delivered", delay=30), Reply(text="the one reply"))

        async with botline_process(config, port) as first, aiohttp.ClientSession(headers=headers) as http:
            webhook_url = await connect_zapi(http, url, zapi)
            assert await zapi.push(webhook_url, zapi.text_message(PHONE, "are you open today?")) == 200
            await fake.wait_for_requests(1)  # the model is answering...
            first.process.send_signal(signal.SIGKILL)  # ...and the process dies mid-turn
            await first.process.wait()

        assert zapi.sent == []
        async with botline_process(config, port):
            [reply] = await zapi.wait_for_sends(1, timeout=20)
            assert reply.body["phone"] == PHONE and reply.body["message"] == "the one reply"
            await asyncio.sleep(0.5)  # a bounded window: a second reply would show up here
            assert len(zapi.sent) == 1
        second_call = fake.requests[-1].body["messages"]
        assert [m["content"] for m in second_call if m["role"] == "user"] == ["are you open today?"]


async def test_an_answer_stored_but_not_delivered_is_sent_after_a_restart_not_asked_again(tmp_path: Path) -> None:
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake, FakeZapi() as zapi:
        config = write_config(tmp_path, fake, zapi)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        fake.script(Reply(text="the answer, generated once"), Reply(text="a second, unwanted answer"))
        zapi.fail_next(503, count=3)  # the provider is down while botline retries the send...
        async with botline_process(config, port) as first, aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
            webhook_url = await connect_zapi(http, url, zapi)
            assert await zapi.push(webhook_url, zapi.text_message(PHONE, "hello?")) == 200
            await zapi.wait_for_requests(2, timeout=10)  # the answer exists, its sends are failing...
            first.process.send_signal(signal.SIGKILL)  # ...and the process dies before one gets through
            await first.process.wait()

        assert zapi.sent == []
        async with botline_process(config, port):
            [reply] = await zapi.wait_for_sends(1, timeout=20)
            assert reply.body["message"] == "the answer, generated once"
            await asyncio.sleep(0.5)
            assert len(zapi.sent) == 1
        assert len(fake.requests) == 1  # the restart re-delivered the stored answer; the model was not asked again
