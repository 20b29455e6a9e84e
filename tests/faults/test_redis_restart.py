"""Redis restarted under load: 503s while it is away, recovery without restarting botline, nothing lost.

botline runs as a real `botline serve` child on a Redis this test owns (AOF, fsync always), which is
SIGKILLed mid-load and started again on the same port and data. Load is Telegram webhooks (the
emulator re-delivers non-2xx answers, as Telegram does), web-chat prompts and management calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botline.store import open_store
from tests.channels.conftest import connect_telegram
from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.telegram import TelegramEmulator
from tests.faults.conftest import client_of, write_config
from tests.support.processes import botline_process
from tests.support.redis_server import OwnRedis
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

TURN_SECONDS = 0.2
"""Each model answer takes this long, so turns are in flight when Redis dies."""
LOAD_PERIOD = 0.05
OUTAGE_SECONDS = 1.0
HANG_SECONDS = 2.0
"""A refusal slower than this is a hang (the pool's 10 s wait, a socket timeout), not a fast 503."""
REDELIVERIES = (0.0,) * 40
"""Telegram keeps re-delivering for a day; the emulator stops after these (each follows Retry-After)."""
FIRST_CHAT = 9000


def slow_echo(body: dict[str, Any]) -> Reply:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]
    return Reply(text=f"echo: {user['content']}", delay=TURN_SECONDS)


@dataclass
class Load:
    """Traffic sent while Redis goes away and comes back, and what botline answered."""

    server: RunningServer
    telegram: TelegramEmulator
    web_chat_client: str
    webhooks: list[asyncio.Task[int]] = field(default_factory=list)
    prompts: list[tuple[str, int]] = field(default_factory=list)
    """(access key, status) of each web-chat prompt."""
    management: list[int] = field(default_factory=list)
    calls: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        chat = FIRST_CHAT
        while not stop.is_set():
            chat += 1  # one chat per update: no two are merged into one turn by the debounce
            update = self.telegram.text_update(chat, f"hello from {chat}")
            delivery = self.telegram.push_with_retries(update, retry_delays=REDELIVERIES)
            self.webhooks.append(asyncio.create_task(delivery))
            self.calls += [asyncio.create_task(self._prompt()), asyncio.create_task(self._manage())]
            await asyncio.sleep(LOAD_PERIOD)
        await asyncio.gather(*self.calls)

    async def _prompt(self) -> None:
        status, session = await self.server.call("POST", f"/api/v1/web-chat-client/{self.web_chat_client}/sessions",
                                                 json={})
        if status != 200:
            self.management.append(status)
            return
        key = session["accessKey"]
        status, _ = await self.server.call("POST", public(key, "/prompt"), json=prompt(f"question for {key}"))
        self.prompts.append((key, status))

    async def _manage(self) -> None:
        status, _ = await self.server.call("GET", "/api/v1/ai-gateways")
        self.management.append(status)


async def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = await call()
    return time.monotonic() - started, result


async def wait_until_ready(server: RunningServer, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while (await server.call("GET", "/readyz"))[0] != 200:
            await asyncio.sleep(0.05)


async def test_redis_restarted_under_load_refuses_fast_recovers_and_loses_nothing(tmp_path: Path) -> None:
    fake = FakeLLM(api_key=UPSTREAM_KEY, default_reply=slow_echo)
    async with fake, TelegramEmulator(time_scale=0.3) as telegram:
        with OwnRedis(tmp_path) as redis:
            config = write_config(tmp_path, redis.url, fake, providers={"telegram": {
                "api_url": telegram.url, "mode": "webhook"}}, server={"shutdown_grace_seconds": 1})
            async with botline_process(config) as process, client_of(process) as server:
                await connect_telegram(server, fake, telegram)
                load = Load(server, telegram, await create_client(server, fake))
                stop = asyncio.Event()
                traffic = asyncio.create_task(load.run(stop))
                await asyncio.sleep(0.5)

                redis.kill()
                elapsed, (status, body) = await timed(lambda: server.call("GET", "/api/v1/ai-gateways"))
                assert (status, body["message"]) == (503, "Storage is unavailable right now; try again shortly.")
                assert elapsed < HANG_SECONDS
                elapsed, (status, body) = await timed(
                    lambda: server.call("POST", f"/api/v1/web-chat-client/{load.web_chat_client}/sessions", json={}))
                assert status == 503 and elapsed < HANG_SECONDS
                assert (await server.call("GET", "/readyz"))[0] == 503
                assert (await server.call("GET", "/healthz")) == (200, {"status": "ok"})
                await asyncio.sleep(OUTAGE_SECONDS)  # the load keeps coming meanwhile

                await asyncio.to_thread(redis.start)
                await wait_until_ready(server)
                await asyncio.sleep(0.5)  # load after the restart too
                stop.set()
                await traffic
                statuses = await asyncio.gather(*load.webhooks)

                # Every update ends up accepted: the ones refused during the outage were re-delivered.
                assert set(statuses) == {200}
                refused = [d for d in telegram.deliveries if d.status != 200]
                assert refused, "the outage refused no webhook: it did not overlap the load"
                assert {d.status for d in refused} <= {503}
                # ...and each is answered exactly once, in its own chat.
                chats = range(FIRST_CHAT + 1, FIRST_CHAT + 1 + len(statuses))
                async with asyncio.timeout(15):
                    while len(telegram.sent_messages()) < len(statuses):
                        await telegram.wait_for_messages(len(statuses), timeout=15)
                await asyncio.sleep(0.5)  # a bounded window: a second reply would show up here
                for chat in chats:
                    assert [m["text"] for m in telegram.sent_messages(chat)] == [f"echo: hello from {chat}"]

                # Web-chat prompts: refused with 503 or answered; never half an answer.
                assert {status for _, status in load.prompts} <= {200, 503}
                assert 503 in {status for _, status in load.prompts} | set(load.management)
                for key, status in load.prompts:
                    _, transcript = await server.call("GET", public(key, "/transcript.json"))
                    roles = [m["role"] for m in transcript["messages"]]
                    if status == 200:
                        assert roles == ["user", "assistant"]
                    else:
                        assert roles in ([], ["user"], ["user", "assistant"])

                # The background work came back with Redis: new traffic is answered, usage is written.
                assert await telegram.push(telegram.text_update(FIRST_CHAT, "after")) == 200
                [reply] = await telegram.wait_for_messages(1, chat_id=FIRST_CHAT, timeout=10)
                assert reply["text"] == "echo: after"
                session = await open_session(server, load.web_chat_client)
                status, answer = await server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("hi"))
                assert (status, answer["completionText"]) == (200, "echo: hi")
                await assert_usage_written(redis.url, fake)


async def assert_usage_written(redis_url: str, fake: FakeLLM) -> None:
    """The usage recorder (a background loop; nothing here reads usage through the API, which would
    flush it) wrote one record per model call, those made while Redis was away included."""
    async with await open_store(redis_url) as store:
        [account] = await store.accounts.list()
        async with asyncio.timeout(5):
            while (await store.usage.totals(account.id)).requests < len(fake.requests):
                await asyncio.sleep(0.1)
        assert (await store.usage.totals(account.id)).requests == len(fake.requests)
