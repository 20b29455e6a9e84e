"""LLM connections (/api/v1/ai/llm) through a running server, and gateways that use them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from botline.accounts import create_account
from botline.app import STORE
from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer

BASE = "/api/v1/ai/llm"
WRONG_KEY = "sk-wrong-key-that-must-never-leak-either"


async def add_connection(server: RunningServer, fake: FakeLLM, *, secret: str = UPSTREAM_KEY, key: str | None = None,
                         **fields: Any) -> str:
    body = {"name": "Main", "aiType": "OTHER", "endpoint": fake.base_url, "secret": secret, **fields}
    status, created = await server.call("POST", BASE, key=key, json=body)
    assert status == 200 and created["success"] is True, created
    return str(created["aiLlmId"])


async def add_gateway(server: RunningServer, connection_id: str, **parameters: Any) -> str:
    status, body = await server.call("POST", "/api/v1/ai-gateways", json={
        "name": parameters.pop("name", "Connected"),
        "parameters": {"llmConnectionId": connection_id, "modelName": "fake-model", **parameters}})
    assert status == 200, body
    return str(body["aiGatewayId"])


async def ask(server: RunningServer, gateway_id: str, **extra: Any) -> tuple[int, Any]:
    return await server.call("POST", "/v1/chat/completions", json={
        "model": gateway_id, "messages": [{"role": "user", "content": "hello"}], **extra})


async def listing(server: RunningServer, path: str = BASE, **params: str) -> list[dict[str, Any]]:
    status, body = await server.call("GET", path, params=params)
    assert status == 200 and body["success"] is True, body
    return list(body["aiLlms"])


async def test_create_fills_each_providers_default_endpoint_and_never_returns_secrets(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    for name, ai_type in [("o", "OPENAI"), ("g", "GOOGLE"), ("a", "ANTHROPIC"), ("w", "AWS")]:
        status, body = await server.call("POST", BASE, json={"name": name, "aiType": ai_type, "secret": "s3cr3t-x",
                                                              "key": "AKIA-key-id"})
        assert status == 200 and body["success"], body
    found = {c["name"]: c for c in await listing(server)}
    assert found["o"]["endpoint"] == "https://api.openai.com/v1"
    assert found["g"]["endpoint"] == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert found["a"]["endpoint"] == "https://api.anthropic.com/v1"
    assert found["w"]["endpoint"].startswith("https://bedrock-runtime.")
    assert all(c["key"] is None and c["secret"] is None for c in found.values())
    assert "s3cr3t-x" not in str(found) and "AKIA-key-id" not in str(found)
    assert [c["name"] for c in await listing(server, aiType="GOOGLE")] == ["g"]
    assert [c["name"] for c in await listing(server, workspaceId="another-workspace")] == []


async def test_bad_bodies_are_clear_4xx_in_flashbacks_envelope(server: RunningServer, fake_llm: FakeLLM) -> None:
    status, body = await server.call("POST", BASE, json={"name": "x", "aiType": "OTHER"})
    assert (status, body) == (400, {"success": False,
                                    "message": "Invalid value for endpoint: required for aiType OTHER."})
    status, body = await server.call("POST", BASE, json={"name": "x", "aiType": "MISTRAL"})
    assert status == 400 and "aiType" in body["message"]
    status, body = await server.call("POST", BASE, json={"name": "x", "aiType": "OTHER", "endpoint": "ftp://h"})
    assert status == 400 and "endpoint" in body["message"]
    await add_connection(server, fake_llm)
    status, body = await server.call("POST", BASE, json={"name": "Main", "aiType": "OPENAI"})
    assert status == 409 and body["success"] is False and "Main" in body["message"]
    assert len(await listing(server)) == 1


async def test_validate_makes_a_real_call_and_available_lists_only_validated_ones(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    good = await add_connection(server, fake_llm)
    bad = await add_connection(server, fake_llm, name="Bad", secret=WRONG_KEY)
    status, body = await server.call("POST", f"{BASE}/{good}/validate")
    assert status == 200 and body["success"] is True, body
    status, body = await server.call("POST", f"{BASE}/{bad}/validate")
    assert status == 200 and body["success"] is False
    assert "Incorrect API key provided" in body["message"] and WRONG_KEY not in body["message"]
    assert [c["id"] for c in await listing(server, f"{BASE}/available")] == [good]
    status, body = await server.call("POST", f"{BASE}/{good}/validate", json={"modelName": "fake-model"})
    assert status == 200 and body["success"] is True and "fake-model" in body["message"]
    assert fake_llm.requests[-1].body["model"] == "fake-model"


async def test_a_rotated_key_reaches_every_gateway_using_the_connection_at_once(
    server: RunningServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connection = await add_connection(server, fake_llm, secret=WRONG_KEY)
    first, second = await add_gateway(server, connection, name="One"), await add_gateway(server, connection, name="Two")
    assert (await ask(server, first))[0] == 502  # the provider refuses the old key
    status, body = await server.call("PUT", f"{BASE}/{connection}", json={"secret": UPSTREAM_KEY})
    assert status == 200 and body == {"success": True, "aiLlmId": connection, "message": "LLM connection updated."}
    for gateway in (first, second):
        status, answer = await ask(server, gateway)
        assert status == 200 and answer["choices"][0]["message"]["content"] == "echo: hello"
    assert fake_llm.requests[-1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    status, view = await server.call("GET", f"/api/v1/ai-gateways/{first}")
    assert view["parameters"]["llmConnectionId"] == connection and view["parameters"]["apiKey"] is None
    status, gateways = await server.call("GET", "/api/v1/ai-gateways")
    assert {g["inferenceEndpoint"] for g in gateways} == {fake_llm.base_url}
    for secret in (UPSTREAM_KEY, WRONG_KEY):
        assert secret not in caplog.text and secret not in str(view) and secret not in str(gateways)


async def test_stats_count_calls_and_tokens_of_the_gateways_using_it(server: RunningServer, fake_llm: FakeLLM) -> None:
    connection = await add_connection(server, fake_llm)
    unused = await add_connection(server, fake_llm, name="Unused")
    gateway = await add_gateway(server, connection)
    for _ in range(2):
        assert (await ask(server, gateway))[0] == 200
    status, body = await server.call("GET", f"{BASE}/stats")
    assert status == 200 and body["success"] is True
    by_id = {s["aiLlmId"]: s for s in body["stats"]}
    assert by_id[connection]["totalApiCalls"] == "2"
    assert int(by_id[connection]["totalTokensIn"]) > 0
    assert by_id[connection]["totalLlmTokensOut"] == by_id[connection]["totalTokensOut"] != "0"
    assert by_id[connection]["totalPolicyViolations"] == by_id[connection]["totalBlocks"] == "0"
    assert by_id[unused]["totalApiCalls"] == "0"
    status, body = await server.call("GET", f"{BASE}/stats", params={"aiLlmId": unused})
    assert [s["aiLlmId"] for s in body["stats"]] == [unused]


async def test_delete_in_use_is_a_409_naming_the_gateways(server: RunningServer, fake_llm: FakeLLM) -> None:
    connection = await add_connection(server, fake_llm)
    gateway = await add_gateway(server, connection, name="Support desk")
    status, body = await server.call("DELETE", f"{BASE}/{connection}")
    assert status == 409 and body["success"] is False
    assert "Support desk" in body["message"] and body["gateways"] == [{"id": gateway, "name": "Support desk"}]
    status, _ = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway}",
                                  json={"parameters": {"baseAddress": fake_llm.base_url, "apiKey": UPSTREAM_KEY}})
    assert status == 200
    status, body = await server.call("DELETE", f"{BASE}/{connection}")
    assert (status, body["success"]) == (200, True)
    assert (await ask(server, gateway))[0] == 200  # back on its own address
    assert (await server.call("DELETE", f"{BASE}/{connection}"))[0] == 404


async def test_a_gateway_names_one_upstream_and_only_its_own_accounts_connection(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    connection = await add_connection(server, fake_llm)
    status, body = await server.call("POST", "/api/v1/ai-gateways", json={"name": "Both", "parameters": {
        "llmConnectionId": connection, "baseAddress": fake_llm.base_url, "modelName": "m"}})
    assert status == 400 and "parameters.baseAddress" in body["message"]
    status, body = await server.call("POST", "/api/v1/ai-gateways", json={"name": "None", "parameters": {
        "modelName": "m"}})
    assert status == 400 and "parameters.baseAddress" in body["message"]
    assert server.app is not None
    other = (await create_account(server.app[STORE], name="Tenant B")).secret
    theirs = await add_connection(server, fake_llm, key=other)
    status, body = await server.call("POST", "/api/v1/ai-gateways", json={"name": "Stolen", "parameters": {
        "llmConnectionId": theirs, "modelName": "m"}})
    assert status == 400 and "parameters.llmConnectionId" in body["message"]
    assert (await server.call("POST", f"{BASE}/{theirs}/validate"))[0] == 404
    assert (await server.call("PUT", f"{BASE}/{theirs}", json={"name": "mine"}))[0] == 404


async def test_a_new_endpoint_needs_the_secret_again_and_clears_the_validation(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    connection = await add_connection(server, fake_llm)
    await server.call("POST", f"{BASE}/{connection}/validate")
    status, body = await server.call("PUT", f"{BASE}/{connection}", json={"endpoint": "https://elsewhere.example/v1"})
    assert status == 400 and body["success"] is False and "secret" in body["message"]
    status, _ = await server.call("PUT", f"{BASE}/{connection}", json={"name": "Renamed", "secret": "********"})
    assert status == 200
    [view] = await listing(server)
    assert view["name"] == "Renamed" and view["available"] is True  # a rename keeps the validation
    status, _ = await server.call("PUT", f"{BASE}/{connection}", json={"endpoint": fake_llm.base_url + "/",
                                                                       "secret": UPSTREAM_KEY})
    assert status == 200
    assert await listing(server, f"{BASE}/available") == []


async def test_anthropic_connections_get_the_providers_quirks(server: RunningServer, fake_llm: FakeLLM) -> None:
    connection = await add_connection(server, fake_llm, aiType="ANTHROPIC")
    gateway = await add_gateway(server, connection, temperature=1.7)
    status, _ = await ask(server, gateway, stop=[" ", "END"])
    assert status == 200
    sent = fake_llm.requests[-1].body
    assert sent["temperature"] == 1.0 and sent["stop"] == ["END"]


async def test_google_connections_send_at_most_five_stop_sequences(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway = await add_gateway(server, await add_connection(server, fake_llm, aiType="GOOGLE"), temperature=1.7)
    status, _ = await ask(server, gateway, stop=[f"s{i}" for i in range(7)])
    assert status == 200
    sent = fake_llm.requests[-1].body
    assert sent["stop"] == ["s0", "s1", "s2", "s3", "s4"] and sent["temperature"] == 1.7
