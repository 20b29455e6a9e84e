"""Fixtures shared by every test folder: the fake LLM, a running botline, a gateway on the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from botline.domain.clock import Clock, SystemClock
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.telegram import TelegramEmulator
from tests.support.knowledge import kb_server
from tests.support.redis_server import redis_url
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.stores import replica, store, store_location

__all__ = ["kb_server", "redis_url", "replica", "store", "store_location"]

UPSTREAM_KEY = "sk-upstream-secret-value-that-must-never-leak"


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramEmulator]:
    """The Telegram Bot API emulator, its clock 100 times faster."""
    async with TelegramEmulator(time_scale=0.01) as emulator:
        yield emulator


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the server's settings."""
    return {}


@pytest.fixture
def clock() -> Clock:
    """The server's clock; override with a FrozenClock to move time without sleeping."""
    return SystemClock()


@pytest.fixture
async def server(tmp_path: Path, settings_overrides: dict[str, Any], clock: Clock) -> AsyncIterator[RunningServer]:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", **settings_overrides)
    async with running_server(settings, clock=clock) as running:
        yield running


def gateway_body(fake: FakeLLM, **parameters: Any) -> dict[str, Any]:
    return {
        "name": parameters.pop("name", "Support bot"),
        "parameters": {"baseAddress": fake.base_url, "apiKey": UPSTREAM_KEY, "modelName": "fake-model",
                       **parameters},
    }


async def create_gateway(server: RunningServer, fake: FakeLLM, key: str | None = None, **parameters: Any) -> str:
    status, body = await server.call("POST", "/api/v1/ai-gateways", key=key, json=gateway_body(fake, **parameters))
    assert status == 200, body
    return str(body["aiGatewayId"])
