"""Usage limits: tokens per day and spend per month of a scoped key, and of an account (set by an
administrator). Past a limit a turn is refused, never passed silently: 429 + Retry-After for tokens,
402 for spend; the message says whose limit and which."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botline.accounts import create_account
from botline.app import STORE
from botline.domain.clock import FrozenClock
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer

START = datetime(2026, 3, 15, 22, 0, tzinfo=UTC)
"""Two hours before the next UTC day; 16 days and 2 hours before the next month."""


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # one token costs 1 (the price table is per million tokens)
    return {"batch": {"prices": {"fake-model": {"input_per_million": 1e6, "output_per_million": 1e6}}}}


async def ask(server: RunningServer, gateway: str, key: str) -> tuple[int, dict[str, str], Any]:
    async with server.http.post(server.url + "/v1/chat/completions", headers=server.headers(key), json={
            "model": gateway, "messages": [{"role": "user", "content": "Hello there"}]}) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def scoped_key(server: RunningServer, scope: dict[str, Any], key: str | None = None) -> str:
    status, body = await server.call("POST", "/api/v1/accounts/api-key", key=key, json={"scope": scope})
    assert status == 200, body
    return str(body["grantKey"])


async def test_a_key_past_its_tokens_per_day_gets_429_until_the_next_utc_day(
    server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    key = await scoped_key(server, {"tokensPerDay": 5})
    assert (await ask(server, gateway, key))[0] == 200  # under the limit when it starts
    status, headers, body = await ask(server, gateway, key)
    assert status == 429 and headers["Retry-After"] == str(2 * 3600)
    assert body["error"]["type"] == "rate_limit_error"
    assert "API key" in body["error"]["message"] and "5 tokens per day" in body["error"]["message"]
    assert (await ask(server, gateway, server.admin_key))[0] == 200  # another key is not limited
    assert len(fake_llm.requests) == 2  # the refused turn never reached the model
    clock.advance(timedelta(hours=2))
    assert (await ask(server, gateway, key))[0] == 200


async def test_a_key_past_its_spend_per_month_gets_402(
    server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    key = await scoped_key(server, {"spendPerMonth": 2.5})
    assert (await ask(server, gateway, key))[0] == 200
    status, headers, body = await ask(server, gateway, key)
    assert status == 402 and body["error"]["type"] == "insufficient_quota"
    assert "spending limit of 2.5 per month" in body["error"]["message"]
    assert headers["Retry-After"] == str((16 * 24 + 2) * 3600)
    clock.advance(timedelta(days=17))
    assert (await ask(server, gateway, key))[0] == 200


async def test_a_key_cannot_mint_a_key_with_a_wider_budget(server: RunningServer) -> None:
    narrow = await scoped_key(server, {"tokensPerDay": 100, "spendPerMonth": 5})
    for wider, field in (({"tokensPerDay": 101}, "tokensPerDay"), ({"spendPerMonth": 6}, "spendPerMonth")):
        status, body = await server.call("POST", "/api/v1/accounts/api-key", key=narrow, json={"scope": wider})
        assert status == 403 and f"scope.{field}" in body["message"]
    inherited = await scoped_key(server, {"tokensPerDay": 50}, key=narrow)
    status, keys = await server.call("GET", "/api/v1/accounts/api-key")
    scopes = [k["scope"] for k in keys["apiKeys"] if k["scope"]]
    assert {"gateways": None, "requestsPerMinute": None, "tokensPerDay": 50, "spendPerMonth": 5.0} in scopes
    assert inherited


async def test_an_account_past_the_limit_its_administrator_set_is_refused_on_every_key(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    assert server.app is not None
    tenant = await create_account(server.app[STORE], name="Tenant")
    account_id = tenant.record.account_id
    gateway = await create_gateway(server, fake_llm, key=tenant.secret)
    status, body = await server.call("PATCH", f"/api/v1/admin/accounts/{account_id}",
                                     json={"limits": {"tokensPerDay": 0}})
    assert status == 400 and "tokensPerDay" in body["message"]
    assert (await server.call("PATCH", f"/api/v1/admin/accounts/{account_id}",
                              json={"limits": {"tokensPerDay": 5}}))[0] == 200
    status, body = await server.call("GET", f"/api/v1/admin/accounts/{account_id}")
    assert body["limits"] == {"tokensPerDay": 5, "spendPerMonth": None}
    assert (await ask(server, gateway, tenant.secret))[0] == 200
    status, _, body = await ask(server, gateway, tenant.secret)
    assert status == 429 and "This account's usage limit" in body["error"]["message"]
    other_key = await scoped_key(server, {}, key=tenant.secret)
    assert (await ask(server, gateway, other_key))[0] == 429
    assert (await server.call("PATCH", f"/api/v1/admin/accounts/{account_id}", json={"limits": {}}))[0] == 200
    assert (await ask(server, gateway, tenant.secret))[0] == 200
