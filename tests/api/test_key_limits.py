"""L3: a key is a boundary. What it mints (keys, login tokens) never outlives it or has wider
rights, an account holds a bounded number of keys, and a key sent as `?api-key=` is never logged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from botline.accounts import create_account
from botline.app import STORE
from botline.domain.clock import FrozenClock
from tests.emulators.fake_llm import FakeLLM
from tests.faults.conftest import write_config
from tests.support.processes import botline_process, stop_process
from tests.support.server import ADMIN_KEY, RunningServer

START = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)
KEYS = "/api/v1/accounts/api-key"
MAX_KEYS = 5


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auth": {"max_keys_per_account": MAX_KEYS}}


async def tenant_key(server: RunningServer) -> str:
    assert server.app is not None
    return (await create_account(server.app[STORE], name="Tenant")).secret


async def mint(server: RunningServer, key: str, duration: int) -> tuple[str, str | None]:
    status, answer = await server.call("POST", KEYS, key=key, json={"label": f"{duration} days", "duration": duration})
    assert status == 200, answer
    return str(answer["grantKey"]), answer["expiresAt"]


async def test_l3_a_key_cannot_mint_a_key_that_outlives_it(server: RunningServer, clock: FrozenClock) -> None:
    tenant = await tenant_key(server)
    day_key, day_expiry = await mint(server, tenant, 1)
    assert day_expiry is not None and datetime.fromisoformat(day_expiry) == START + timedelta(days=1)
    forever, forever_expiry = await mint(server, day_key, -1)
    _, year_expiry = await mint(server, day_key, 365)
    assert forever_expiry == year_expiry == day_expiry  # capped at the minting key's expiry
    listed = {k["label"]: k["expiresAt"] for k in (await server.call("GET", KEYS, key=tenant))[1]["apiKeys"]}
    assert listed["-1 days"] == listed["365 days"] == day_expiry
    clock.advance(timedelta(days=1))
    assert (await server.call("GET", KEYS, key=forever))[0] == 401  # it died with the key that made it
    assert (await server.call("GET", KEYS, key=tenant))[0] == 200
    assert (await mint(server, tenant, -1))[1] is None  # a key that never expires may mint one that never does


async def test_l3_login_tokens_expire_with_their_login_key(server: RunningServer, clock: FrozenClock) -> None:
    tenant = await tenant_key(server)
    day_key, day_expiry = await mint(server, tenant, 1)
    status, login = await server.call("POST", "/api/v1/auth/login", json={"loginKey": day_key})
    assert status == 200, login
    token_entry = [k for k in (await server.call("GET", KEYS, key=tenant))[1]["apiKeys"]
                   if k["label"] == "access token"]
    assert [k["expiresAt"] for k in token_entry] == [day_expiry]  # not 180 days
    clock.advance(timedelta(days=1))
    assert (await server.call("GET", KEYS, key=login["accessToken"]))[0] == 401
    status, login = await server.call("POST", "/api/v1/auth/login", json={"loginKey": tenant})
    assert status == 200
    tokens = [k["expiresAt"] for k in (await server.call("GET", KEYS, key=tenant))[1]["apiKeys"]
              if k["label"] == "access token"]
    assert datetime.fromisoformat(tokens[-1]) == START + timedelta(days=181)  # 180 days from now


async def test_l3_a_tenant_key_cannot_mint_admin_rights(server: RunningServer) -> None:
    tenant = await tenant_key(server)
    minted, _ = await mint(server, tenant, -1)
    status, body = await server.call("GET", "/api/v1/admin/accounts", key=minted)
    assert status == 403 and body["message"]
    status, _ = await server.call("PUT", "/api/v1/accounts", key=minted, json={"name": "Tenant", "isAdmin": True})
    assert status == 200  # the unknown field is ignored, not applied
    status, login = await server.call("POST", "/api/v1/auth/login", json={"loginKey": minted})
    assert status == 200 and login["account"]["isAdmin"] is False
    assert (await server.call("GET", "/api/v1/admin/accounts", key=login["accessToken"]))[0] == 403


async def test_l3_the_number_of_keys_per_account_is_capped(server: RunningServer) -> None:
    tenant = await tenant_key(server)  # key 1 of 5
    for _ in range(3):
        await mint(server, tenant, 30)
    status, _ = await server.call("POST", "/api/v1/auth/login", json={"loginKey": tenant})  # key 5: tokens count
    assert status == 200
    status, body = await server.call("POST", KEYS, key=tenant, json={"label": "one too many"})
    assert status == 409 and "auth.max_keys_per_account" in body["message"] and "5 API keys" in body["message"]
    status, body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": tenant})
    assert status == 409 and "delete one" in body["message"]
    keys = (await server.call("GET", KEYS, key=tenant))[1]["apiKeys"]
    assert len(keys) == MAX_KEYS and "one too many" not in [k["label"] for k in keys]
    assert (await server.call("GET", KEYS))[0] == 200  # other accounts are not affected
    token_id = next(k["id"] for k in keys if k["label"] == "access token")
    assert (await server.call("DELETE", f"{KEYS}/{token_id}", key=tenant))[0] == 200
    await mint(server, tenant, 30)  # room again


async def malformed_request(port: int, key: str) -> bytes:
    """A request aiohttp's own parser refuses (a header line without a colon), key in the query."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {KEYS}?api-key={key} HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read(200)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_l3_a_key_in_the_query_string_is_never_logged(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """The real `botline serve`, logging everything at DEBUG: the key works as `?api-key=` (the
    AIVAX contract), and appears in no log line, for answers that succeed, fail or crash."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'botline.db'}", fake_llm, logging={"level": "DEBUG"})
    log_file = tmp_path / "botline.log"
    wrong = "sk-wrong-key-that-must-not-be-logged-either-0123456789"
    async with botline_process(config, log_file=log_file) as process, aiohttp.ClientSession() as http:
        answers = []
        for method, path, key, body in [
            ("GET", KEYS, ADMIN_KEY, None),
            ("GET", KEYS, wrong, None),
            ("POST", KEYS, ADMIN_KEY, b"{not json"),
            ("GET", "/api/v1/no-such-route", ADMIN_KEY, None),
            ("GET", "/v1/models", ADMIN_KEY, None),
            ("GET", "/chat/not-a-session", ADMIN_KEY, None),
        ]:
            async with http.request(method, process.url + path, params={"api-key": key}, data=body) as response:
                answers.append(response.status)
        assert answers == [200, 401, 400, 404, 200, 404]
        assert b" 400 " in (await malformed_request(process.port, wrong)).split(b"\r\n", 1)[0]
        await stop_process(process.process)
    logged = log_file.read_text()
    assert f"GET {KEYS} 200" in logged and f"GET {KEYS} 401" in logged  # the access log did run
    for secret in (ADMIN_KEY, wrong, ADMIN_KEY[-12:], wrong[-12:]):
        assert secret not in logged
