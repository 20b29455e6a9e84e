"""Administration of accounts (seed section Administration): admin keys only, over real loopback HTTP."""

from __future__ import annotations

import pytest

from botline.accounts import IssuedKey, create_account
from botline.app import STORE
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def tenant(server: RunningServer, name: str) -> IssuedKey:
    assert server.app is not None
    return await create_account(server.app[STORE], name=name)


async def admin_id(server: RunningServer) -> str:
    _, accounts = await server.call("GET", "/api/v1/admin/accounts", params={"query": "admin"})
    return str(next(a["id"] for a in accounts if a["isAdmin"]))


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None),
    ("GET", "/{id}", None),
    ("PATCH", "/{id}", {"isAdmin": True}),
    ("GET", "/{id}/usage", None),
    ("POST", "/{id}/balance-adjustments", {"operation": "set", "amount": 1000}),
])
async def test_a_non_admin_key_is_forbidden(server: RunningServer, method: str, suffix: str, body: object) -> None:
    user = await tenant(server, "Tenant")
    path = "/api/v1/admin/accounts" + suffix.format(id=user.record.account_id)
    status, answer = await server.call(method, path, key=user.secret, json=body)
    assert status == 403 and answer["message"]
    _, account = await server.call("GET", f"/api/v1/admin/accounts/{user.record.account_id}")
    assert account["isAdmin"] is False and account["balance"] is None


async def test_admin_lists_accounts_and_filters_by_name(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    await tenant(server, "Globex")
    status, accounts = await server.call("GET", "/api/v1/admin/accounts")
    assert status == 200
    assert sorted(a["name"] for a in accounts) == ["Acme Corp", "Globex", "admin"]
    status, found = await server.call("GET", "/api/v1/admin/accounts", params={"query": "acme"})
    assert status == 200
    assert [(a["id"], a["name"]) for a in found] == [(acme.record.account_id, "Acme Corp")]
    assert found[0]["disabled"] is False and found[0]["isAdmin"] is False
    status, none = await server.call("GET", "/api/v1/admin/accounts", params={"query": "initech"})
    assert status == 200 and none == []


async def test_admin_gets_one_account(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    status, account = await server.call("GET", f"/api/v1/admin/accounts/{acme.record.account_id}")
    assert status == 200
    assert account["id"] == acme.record.account_id and account["name"] == "Acme Corp"
    assert account["plan"] == "Free" and account["balance"] is None and account["disabled"] is False
    assert account["parameters"]["allowConversationsLogging"] is True
    assert "salt" not in account


async def test_disabling_an_account_locks_its_key_out_at_once(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    path = f"/api/v1/admin/accounts/{acme.record.account_id}"
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=acme.secret))[0] == 200  # now cached
    status, body = await server.call("PATCH", path, json={"disabled": True})
    assert status == 200 and body["message"]
    status, body = await server.call("GET", "/api/v1/accounts/api-key", key=acme.secret)
    assert status == 403 and "disabled" in body["message"]
    status, listed = await server.call("GET", "/api/v1/admin/accounts", params={"viewMode": "disabled"})
    assert [a["id"] for a in listed] == [acme.record.account_id]
    assert (await server.call("PATCH", path, json={"disabled": False}))[0] == 200
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=acme.secret))[0] == 200


async def test_a_disabled_account_cannot_log_in(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    await server.call("PATCH", f"/api/v1/admin/accounts/{acme.record.account_id}", json={"disabled": True})
    status, body = await server.call("POST", "/api/v1/auth/login", json={"loginKey": acme.secret})
    assert status == 400 and "accessToken" not in body


async def test_promoting_an_account_opens_administration_to_it(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    assert (await server.call("GET", "/api/v1/admin/accounts", key=acme.secret))[0] == 403
    status, _ = await server.call("PATCH", f"/api/v1/admin/accounts/{acme.record.account_id}", json={"isAdmin": True})
    assert status == 200
    status, accounts = await server.call("GET", "/api/v1/admin/accounts", key=acme.secret)
    assert status == 200 and len(accounts) == 2


async def test_patch_changes_plan_and_name(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    path = f"/api/v1/admin/accounts/{acme.record.account_id}"
    status, _ = await server.call("PATCH", path, json={"plan": "Pro", "name": "Acme Inc"})
    assert status == 200
    _, account = await server.call("GET", path)
    assert account["plan"] == "Pro" and account["name"] == "Acme Inc"
    _, login = await server.call("POST", "/api/v1/auth/login", json={"loginKey": acme.secret})
    assert login["account"]["plan"] == "Pro"


@pytest.mark.parametrize(("patch", "field"), [
    ({"plan": "Platinum"}, "plan"), ({"disabled": "maybe"}, "disabled"), ({"name": ""}, "name"),
])
async def test_patch_with_a_bad_value_is_a_400(server: RunningServer, patch: dict, field: str) -> None:
    acme = await tenant(server, "Acme Corp")
    path = f"/api/v1/admin/accounts/{acme.record.account_id}"
    status, body = await server.call("PATCH", path, json=patch)
    assert status == 400 and field in body["message"]
    _, account = await server.call("GET", path)
    assert account["plan"] == "Free" and account["name"] == "Acme Corp" and account["disabled"] is False


async def test_usage_shows_per_model_totals_after_a_call(server: RunningServer, fake_llm: FakeLLM) -> None:
    acme = await tenant(server, "Acme Corp")
    gateway_id = await create_gateway(server, fake_llm, key=acme.secret)
    fake_llm.script(Reply(text="Hi!", prompt_tokens=30, completion_tokens=4))
    status, _ = await server.call("POST", "/v1/chat/completions", key=acme.secret, json={
        "model": gateway_id, "messages": [{"role": "user", "content": "hello"}],
    })
    assert status == 200
    status, usage = await server.call("GET", f"/api/v1/admin/accounts/{acme.record.account_id}/usage")
    assert status == 200
    assert usage["accountId"] == acme.record.account_id
    [model] = usage["models"]
    assert model["model"] == "fake-model"
    assert (model["requests"], model["inputTokens"], model["outputTokens"], model["totalTokens"]) == (1, 30, 4, 34)
    assert usage["totals"]["requests"] == 1 and usage["totals"]["totalTokens"] == 34
    _, admin_usage = await server.call("GET", f"/api/v1/admin/accounts/{await admin_id(server)}/usage")
    assert admin_usage["models"] == [] and admin_usage["totals"]["requests"] == 0


async def test_balance_adjustments_add_remove_and_set(server: RunningServer) -> None:
    acme = await tenant(server, "Acme Corp")
    path = f"/api/v1/admin/accounts/{acme.record.account_id}/balance-adjustments"
    expected = [("add", 10.0, 10.0), ("add", 2.5, 12.5), ("remove", 4.0, 8.5), ("set", 100.0, 100.0)]
    for operation, amount, balance in expected:
        status, body = await server.call("POST", path, json={"operation": operation, "amount": amount})
        assert status == 200 and body["balance"] == balance
    _, own = await server.call("GET", "/api/v1/information/balance", key=acme.secret)
    assert own["balance"] == 100.0
    status, body = await server.call("POST", path, json={"operation": "double", "amount": 1})
    assert status == 400 and "operation" in body["message"]
    status, body = await server.call("POST", path, json={"operation": "add", "amount": -5})
    assert status == 400 and "amount" in body["message"]
    _, own = await server.call("GET", "/api/v1/information/balance", key=acme.secret)
    assert own["balance"] == 100.0


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None),
    ("PATCH", "", {"disabled": True}),
    ("GET", "/usage", None),
    ("POST", "/balance-adjustments", {"operation": "add", "amount": 1}),
])
async def test_an_unknown_account_is_a_404(server: RunningServer, method: str, suffix: str, body: object) -> None:
    status, answer = await server.call(method, f"/api/v1/admin/accounts/{UNKNOWN_ID}{suffix}", json=body)
    assert status == 404 and answer["message"]
