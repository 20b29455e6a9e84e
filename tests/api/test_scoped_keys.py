"""Scoped API keys: limited to some gateways and a request rate, confined to /v1, never minting wider keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest

from botline.domain.clock import FrozenClock
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer

START = datetime(2026, 12, 4, 10, 0, 5, tzinfo=UTC)
KEYS = "/api/v1/accounts/api-key"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


async def mint(server: RunningServer, scope: dict[str, Any] | None, key: str | None = None) -> tuple[int, Any]:
    return await server.call("POST", KEYS, key=key, json={"label": "scoped", **({"scope": scope} if scope else {})})


async def scoped_key(server: RunningServer, scope: dict[str, Any], key: str | None = None) -> str:
    status, body = await mint(server, scope, key)
    assert status == 200, body
    return str(body["grantKey"])


async def ask(server: RunningServer, key: str, gateway: str) -> tuple[int, Any]:
    return await server.call("POST", "/v1/chat/completions", key=key, json={
        "model": gateway, "messages": [{"role": "user", "content": "hi"}]})


async def test_a_scoped_key_reaches_only_its_gateways(server: RunningServer, fake_llm: FakeLLM) -> None:
    allowed = await create_gateway(server, fake_llm, name="Sales")
    other = await create_gateway(server, fake_llm, name="Support")
    key = await scoped_key(server, {"gateways": ["sales"]})  # by slug; stored as the id
    assert (await ask(server, key, allowed))[0] == 200
    status, body = await ask(server, key, other)
    assert status == 403 and "may not use the AI gateway" in body["error"]["message"]
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    assert [m.id for m in (await sdk.models.list()).data] == [allowed]
    with pytest.raises(openai.PermissionDeniedError):
        await sdk.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}])
    await sdk.close()
    status, listed = await server.call("GET", KEYS)
    assert {k["label"]: k["scope"] for k in listed["apiKeys"]}["scoped"] == {
        "gateways": [allowed], "requestsPerMinute": None, "tokensPerDay": None, "spendPerMonth": None}


async def test_a_scoped_key_is_kept_off_the_management_api(server: RunningServer, fake_llm: FakeLLM) -> None:
    await create_gateway(server, fake_llm)
    key = await scoped_key(server, {"requestsPerMinute": 100})
    for method, path in [("GET", "/api/v1/ai-gateways"), ("GET", KEYS), ("GET", "/api/v1/ai/llm")]:
        status, body = await server.call(method, path, key=key)
        assert status == 403 and "scoped" in body["message"], path


async def test_past_its_rate_a_key_gets_429_with_retry_after(
    server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    key = await scoped_key(server, {"requestsPerMinute": 2})
    assert [(await ask(server, key, gateway))[0] for _ in range(2)] == [200, 200]
    async with server.http.post(server.url + "/v1/chat/completions", headers=server.headers(key), json={
            "model": gateway, "messages": [{"role": "user", "content": "hi"}]}) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "55"
    assert len(fake_llm.requests) == 2
    assert (await ask(server, server.admin_key, gateway))[0] == 200  # the account's own key is not limited
    clock.advance(timedelta(minutes=1))
    assert (await ask(server, key, gateway))[0] == 200


async def test_a_key_cannot_mint_a_wider_one(server: RunningServer, fake_llm: FakeLLM) -> None:
    sales = await create_gateway(server, fake_llm, name="Sales")
    support = await create_gateway(server, fake_llm, name="Support")
    narrow = await scoped_key(server, {"gateways": [sales], "requestsPerMinute": 5})
    status, body = await mint(server, {"gateways": [support]}, narrow)
    assert status == 403 and "scope.gateways" in body["message"]
    status, body = await mint(server, {"requestsPerMinute": 50}, narrow)
    assert status == 403 and "scope.requestsPerMinute" in body["message"]
    status, body = await server.call("POST", KEYS, key=narrow, json={"label": "child"})  # no scope: inherits
    assert status == 200
    child = body["grantKey"]
    assert (await ask(server, child, support))[0] == 403
    assert (await ask(server, child, sales))[0] == 200


async def test_limits_botline_does_not_enforce_are_refused(server: RunningServer, fake_llm: FakeLLM) -> None:
    status, body = await mint(server, {"tokensPerWeek": 1000})
    assert status == 400 and "scope.tokensPerWeek" in body["message"]
    status, body = await mint(server, {"tokensPerDay": 0})
    assert status == 400 and "scope.tokensPerDay" in body["message"]
    status, body = await mint(server, {"gateways": ["nope"]})
    assert status == 400 and "scope.gateways.0" in body["message"]
    status, body = await mint(server, {"requestsPerMinute": 0})
    assert status == 400 and "scope.requestsPerMinute" in body["message"]
