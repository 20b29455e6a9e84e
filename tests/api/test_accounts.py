"""API keys, the account itself, login and balance (seed sections Accounts, API Keys, Authentication,
Information), over real loopback HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botline.accounts import create_account
from botline.app import STORE
from botline.domain.clock import FrozenClock
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import ADMIN_KEY, RunningServer, make_settings, running_server

KEY_SHAPE = re.compile(r"^sk-[A-Za-z0-9_-]{32,}$")
START = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    """The server runs on a clock the tests move: expiry and login windows without sleeping."""
    return FrozenClock(START)


async def new_key(server: RunningServer, key: str | None = None, **body: object) -> str:
    status, answer = await server.call("POST", "/api/v1/accounts/api-key", key=key, json={"label": "t", **body})
    assert status == 200, answer
    return str(answer["grantKey"])


async def second_account(server: RunningServer, name: str = "Tenant B") -> str:
    assert server.app is not None
    issued = await create_account(server.app[STORE], name=name)
    return issued.secret


async def key_list(server: RunningServer, key: str | None = None) -> dict:
    status, body = await server.call("GET", "/api/v1/accounts/api-key", key=key)
    assert status == 200, body
    return body


async def test_created_key_is_random_shown_once_and_authenticates(server: RunningServer) -> None:
    first = await new_key(server, label="ci")
    second = await new_key(server, label="ci")
    assert KEY_SHAPE.match(first) and KEY_SHAPE.match(second)
    assert first != second
    status, _ = await server.call("GET", "/api/v1/accounts/api-key", key=first)
    assert status == 200


async def test_listing_masks_keys_and_shows_the_salt(server: RunningServer) -> None:
    secret = await new_key(server, label="deploy")
    listing = await key_list(server)
    assert isinstance(listing["salt"], str) and len(listing["salt"]) >= 16
    deploy = [k for k in listing["apiKeys"] if k["label"] == "deploy"]
    assert len(deploy) == 1
    assert deploy[0]["key"] == "..." + secret[-6:]
    assert set(deploy[0]) == {"id", "expiresAt", "usedAt", "label", "key", "scope"}
    assert deploy[0]["scope"] is None
    for entry in listing["apiKeys"]:
        assert re.fullmatch(r"\.\.\.[A-Za-z0-9_-]{6}", entry["key"])
    text = str(listing)
    assert secret not in text and ADMIN_KEY not in text


async def test_duration_minus_one_never_expires(server: RunningServer, clock: FrozenClock) -> None:
    secret = await new_key(server, label="forever", duration=-1)
    entry = next(k for k in (await key_list(server))["apiKeys"] if k["label"] == "forever")
    assert entry["expiresAt"] is None
    clock.advance(timedelta(days=3650))
    status, _ = await server.call("GET", "/api/v1/accounts/api-key", key=secret)
    assert status == 200


async def test_duration_in_days_sets_expiry_and_the_key_stops_working(
    server: RunningServer, clock: FrozenClock
) -> None:
    secret = await new_key(server, label="week", duration=7)
    entry = next(k for k in (await key_list(server))["apiKeys"] if k["label"] == "week")
    assert datetime.fromisoformat(entry["expiresAt"]) == START + timedelta(days=7)
    clock.advance(timedelta(days=6, hours=23))
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=secret))[0] == 200
    clock.advance(timedelta(hours=1))
    status, body = await server.call("GET", "/api/v1/accounts/api-key", key=secret)
    assert status == 401 and body["message"]


@pytest.mark.parametrize("duration", [0, -2, "seven"])
async def test_invalid_duration_is_a_400(server: RunningServer, duration: object) -> None:
    status, body = await server.call("POST", "/api/v1/accounts/api-key", json={"label": "x", "duration": duration})
    assert status == 400
    assert "duration" in body["message"]
    assert len((await key_list(server))["apiKeys"]) == 1  # only the admin key from the config


async def test_deleted_key_is_rejected_at_once(server: RunningServer) -> None:
    secret = await new_key(server, label="temp")
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=secret))[0] == 200  # now cached
    key_id = next(k["id"] for k in (await key_list(server))["apiKeys"] if k["label"] == "temp")
    status, body = await server.call("DELETE", f"/api/v1/accounts/api-key/{key_id}")
    assert status == 200 and body["message"]
    status, body = await server.call("GET", "/api/v1/accounts/api-key", key=secret)
    assert status == 401 and body["message"]
    assert key_id not in [k["id"] for k in (await key_list(server))["apiKeys"]]


async def test_deleting_another_accounts_key_is_a_404_and_it_keeps_working(server: RunningServer) -> None:
    other = await second_account(server)
    other_id = (await key_list(server, other))["apiKeys"][0]["id"]
    status, body = await server.call("DELETE", f"/api/v1/accounts/api-key/{other_id}")
    assert status == 404 and body["message"]
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=other))[0] == 200
    status, _ = await server.call("DELETE", "/api/v1/accounts/api-key/no-such-key")
    assert status == 404


async def test_key_in_the_query_string_authenticates(server: RunningServer) -> None:
    secret = await new_key(server)
    async with server.http.get(server.url + "/api/v1/accounts/api-key", params={"api-key": secret}) as response:
        assert response.status == 200
        assert "salt" in await response.json()
    async with server.http.get(server.url + "/api/v1/accounts/api-key", params={"api-key": "sk-nope"}) as response:
        assert response.status == 401


async def test_update_account_changes_name_and_parameters(server: RunningServer) -> None:
    status, body = await server.call("PUT", "/api/v1/accounts", json={
        "name": "Acme Support", "parameters": {"allowConversationsLogging": False, "automaticJsonHealing": True},
    })
    assert status == 200 and body["message"]
    status, login = await server.call("POST", "/api/v1/auth/login", json={"loginKey": ADMIN_KEY})
    assert status == 200
    assert login["account"]["name"] == "Acme Support"
    assert login["account"]["parameters"]["allowConversationsLogging"] is False
    assert login["account"]["parameters"]["automaticJsonHealing"] is True


async def test_update_account_rejects_an_empty_name(server: RunningServer) -> None:
    status, body = await server.call("PUT", "/api/v1/accounts", json={"name": ""})
    assert status == 400 and "name" in body["message"]


async def test_roll_salt_gives_a_new_salt_shown_in_the_key_list(server: RunningServer) -> None:
    before = (await key_list(server))["salt"]
    status, body = await server.call("POST", "/api/v1/accounts/roll-salt")
    assert status == 200
    assert body["salt"] != before
    assert (await key_list(server))["salt"] == body["salt"]


async def test_login_returns_a_working_access_token_and_the_account(server: RunningServer) -> None:
    status, body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": ADMIN_KEY}, headers={})
    assert status == 200
    assert KEY_SHAPE.match(body["accessToken"]) and body["accessToken"] != ADMIN_KEY
    account = body["account"]
    assert set(account) == {"id", "name", "email", "emailSha256", "plan", "isAdmin", "parameters"}
    assert account["name"] == "admin" and account["isAdmin"] is True and account["plan"] == "Free"
    assert set(account["parameters"]) == {"allowConversationsLogging", "automaticJsonHealing", "notifications"}
    assert set(account["parameters"]["notifications"]) == {"emails", "lowBalance", "deprecatedModels"}
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=body["accessToken"]))[0] == 200
    token = next(k for k in (await key_list(server))["apiKeys"] if k["key"] == "..." + body["accessToken"][-6:])
    assert datetime.fromisoformat(token["expiresAt"]) == START + timedelta(days=180)


async def test_login_of_another_account_describes_that_account(server: RunningServer) -> None:
    other = await second_account(server, name="Tenant B")
    status, body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": other})
    assert status == 200
    assert body["account"]["name"] == "Tenant B" and body["account"]["isAdmin"] is False


@pytest.mark.parametrize("payload", [{"loginKey": "sk-not-a-real-key"}, {"loginKey": ""}, {}])
async def test_login_with_a_bad_key_is_a_400(server: RunningServer, payload: dict) -> None:
    status, body = await server.call("POST", "/api/v1/auth/login", json=payload)
    assert status == 400 and body["message"]
    assert "accessToken" not in body


async def test_eleventh_login_attempt_in_a_minute_is_a_429(server: RunningServer, clock: FrozenClock) -> None:
    for _ in range(10):
        status, _body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": "sk-guess"})
        assert status == 400
    async with server.http.post(server.url + "/api/v1/auth/login", json={"loginKey": ADMIN_KEY}) as response:
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert (await response.json())["message"]
    clock.advance(timedelta(seconds=61))
    status, body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": ADMIN_KEY})
    assert status == 200 and body["accessToken"]


async def test_behind_a_trusted_proxy_each_client_has_its_own_login_limit(tmp_path: Path, clock: FrozenClock) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", server={"trusted_proxies": ["127.0.0.0/8"]})
    async with running_server(settings, clock=clock) as proxied:
        async def login_from(client: str) -> int:
            status, _body = await proxied.call("POST", "/api/v1/auth/login", json={"loginKey": "sk-guess"},
                                               headers={"X-Forwarded-For": f"203.0.113.66, {client}"})
            return status

        assert [await login_from("198.51.100.7") for _ in range(11)] == [400] * 10 + [429]
        assert await login_from("203.0.113.9") == 400  # another client behind the same proxy is not locked out
        # only the entry the proxy appended counts: what the client wrote to its left changes nothing
        assert await login_from("198.51.100.7") == 429


async def test_a_forwarded_for_header_from_an_untrusted_peer_does_not_reset_the_login_limit(
        server: RunningServer) -> None:
    statuses = []
    for attempt in range(11):
        status, _body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": "sk-guess"},
                                          headers={"X-Forwarded-For": f"192.0.2.{attempt}"})
        statuses.append(status)
    assert statuses == [400] * 10 + [429]


async def test_balance_has_the_seed_shape_and_is_unlimited(server: RunningServer) -> None:
    status, body = await server.call("GET", "/api/v1/information/balance")
    assert status == 200
    assert body["balance"] is None  # billing is off: unlimited
    assert body["plan"] == "Free" and body["usage24h"] == 0 and body["storageUsage"] == 0
    usage = body["subscriptionModelUsage"]
    assert usage["plan"] == "Free"
    for window in ("sixHours", "weekly"):
        assert usage[window]["models"] == []
        assert usage[window]["isExhausted"] is False
        assert datetime.fromisoformat(usage[window]["resetAt"]) > START
    assert set(body["planLimits"]) == {"includesSubscriptionModels", "includedStorage"}


async def test_balance_shows_a_completion_made_through_a_gateway(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="Hello there.", prompt_tokens=20, completion_tokens=5))
    status, answer = await server.call("POST", "/v1/chat/completions", json={
        "model": gateway_id, "messages": [{"role": "user", "content": "hi"}],
    })
    assert status == 200, answer
    status, body = await server.call("GET", "/api/v1/information/balance")
    assert status == 200
    for window in ("sixHours", "weekly"):
        models = body["subscriptionModelUsage"][window]["models"]
        assert len(models) == 1
        assert models[0]["modelName"] == "fake-model"
        assert models[0]["requestCount"] == 1
        assert models[0]["consumedUnits"] == 25
        assert models[0]["usageSharePercent"] == 100.0
    other = await second_account(server)
    status, theirs = await server.call("GET", "/api/v1/information/balance", key=other)
    assert status == 200 and theirs["subscriptionModelUsage"]["sixHours"]["models"] == []
