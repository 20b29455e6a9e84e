"""Helpers for the channel acceptance tests: a chat client with one messaging integration on a real
botline server, the fake LLM behind it, and the provider's emulator on the other side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from botline.app import STORE
from botline.domain.conversations import Session
from botline.store.base import Store
from tests.emulators.evolution import FakeEvolution
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.kapso import FakeKapso
from tests.emulators.webhook_pusher import Delivery, ProviderEmulator
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer
from tests.support.webchat import create_client

QUIET_SECONDS = 0.3
"""How long "nothing else arrives" is watched for."""


@dataclass(frozen=True)
class Channel:
    client_id: str
    webhook_url: str
    saved: dict[str, Any]
    """The PUT integrations response."""

    def with_token(self, token: str) -> str:
        return self.webhook_url.rsplit("/", 1)[0] + "/" + token


async def connect(
    server: RunningServer, fake_llm: FakeLLM, kind: str, integration: Mapping[str, Any], **client_parameters: Any
) -> Channel:
    """A chat client on the fake LLM with `integration` saved through PUT .../integrations."""
    client_id = await create_client(server, fake_llm, **client_parameters)
    alias = {"Zapi": "zapiIntegration", "EvolutionApi": "evolutionIntegration", "Kapso": "kapsoIntegration",
             "Chatwoot": "chatwootIntegration"}[kind]
    status, saved = await save_integration(server, client_id, kind, {alias: dict(integration)})
    assert status == 200, saved
    assert saved["webhookUrl"].startswith(f"{server.url}/api/v1/webhooks/{kind}/{client_id}/")
    return Channel(client_id, saved["webhookUrl"], saved)


async def connect_telegram(server: RunningServer, fake_llm: FakeLLM, telegram: Any,
                           **client_parameters: Any) -> Channel:
    """A chat client on the fake LLM with the emulator's bot saved as its Telegram integration."""
    client_id = await create_client(server, fake_llm, **client_parameters)
    # The contract's full shape: the other sections present and null (AIVAX marks each one nullable).
    status, saved = await save_integration(server, client_id, "Telegram", {
        "telegramIntegration": {"botToken": telegram.token}, "zapiIntegration": None,
        "evolutionIntegration": None, "kapsoIntegration": None})
    assert status == 200, saved
    return Channel(client_id, saved["webhookUrl"], saved)


async def save_integration(server: RunningServer, client_id: str, kind: str, integrations: dict[str, Any]
                           ) -> tuple[int, Any]:
    return await server.call("PUT", f"/api/v1/web-chat-client/{client_id}/integrations",
                             json={"integrationType": kind, "integrations": integrations})


async def post(server: RunningServer, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
    """One webhook POST of exactly `body`; the server's status and JSON answer."""
    async with server.http.post(url, data=body, headers=dict(headers)) as response:
        return response.status, await response.json(content_type=None)


async def redeliver(server: RunningServer, delivery: Delivery) -> tuple[int, Any]:
    """The provider delivering the same webhook again: the recorded bytes and headers."""
    return await post(server, delivery.url, delivery.body, delivery.headers)


async def assert_no_more_sends(emulator: ProviderEmulator, count: int) -> None:
    """Exactly `count` accepted sends, and no other within QUIET_SECONDS."""
    with pytest.raises(TimeoutError):
        await emulator.wait_for_sends(count + 1, timeout=QUIET_SECONDS)
    assert len(emulator.sent) == count


def store_of(server: RunningServer) -> Store:
    assert server.app is not None
    return server.app[STORE]


async def session_of(server: RunningServer, client_id: str, external_user_id: str) -> Session | None:
    store = store_of(server)
    client = await store.chat_clients.find(client_id)
    assert client is not None
    return await store.sessions.get_by_tag(client.account_id, client_id, external_user_id)


async def wait_for_delivery_error(server: RunningServer, client_id: str, external_user_id: str,
                                  timeout: float = 5.0) -> Session:
    """The session once the engine recorded a final delivery failure on it."""
    async with asyncio.timeout(timeout):
        while True:
            session = await session_of(server, client_id, external_user_id)
            if session is not None and session.last_delivery_error:
                return session
            await asyncio.sleep(0.02)


def last_user_text(fake_llm: FakeLLM, index: int = -1) -> str:
    messages = fake_llm.requests[index].body["messages"]
    content = [m for m in messages if m["role"] == "user"][-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


async def roll_salt(server: RunningServer) -> None:
    status, body = await server.call("POST", "/api/v1/accounts/roll-salt")
    assert status == 200, body


@pytest.fixture
async def zapi() -> AsyncIterator[FakeZapi]:
    """Z-API's emulator as it comes (a module with other needs defines its own)."""
    async with FakeZapi() as fake:
        yield fake


@pytest.fixture
async def evo() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(retry_scale=0.001) as fake:
        yield fake


@pytest.fixture
async def kapso() -> AsyncIterator[FakeKapso]:
    async with FakeKapso() as fake:
        yield fake
