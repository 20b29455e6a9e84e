"""AI gateway CRUD, validation against the upstream, stats and isolation (seed section AI Gateways)."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from botline.accounts import create_account
from botline.app import STORE
from tests.conftest import UPSTREAM_KEY, create_gateway, gateway_body
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer

MASK = "********"
UNREACHABLE = "http://127.0.0.1:1/v1"
TOOL = {
    "name": "lookup_order",
    "description": "Looks an order up by its number.",
    "callbackUrl": "https://example.com/tools/order",
    "headers": {"X-Tool": "1"},
    "contentFormat": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]},
}


async def view(server: RunningServer, gateway_id: str, key: str | None = None) -> dict[str, Any]:
    status, body = await server.call("GET", f"/api/v1/ai-gateways/{gateway_id}", key=key)
    assert status == 200, body
    return dict(body)


async def ask(server: RunningServer, gateway_id: str, text: str = "hi", key: str | None = None) -> tuple[int, Any]:
    return await server.call("POST", "/v1/chat/completions", key=key, json={
        "model": gateway_id, "messages": [{"role": "user", "content": text}],
    })


async def other_tenant(server: RunningServer) -> str:
    assert server.app is not None
    return (await create_account(server.app[STORE], name="Tenant B")).secret


async def test_create_returns_an_id_and_derives_a_unique_slug(server: RunningServer, fake_llm: FakeLLM) -> None:
    first = await create_gateway(server, fake_llm, name="Sales Bot!")
    second = await create_gateway(server, fake_llm, name="Sales Bot!")
    assert uuid.UUID(first) and first != second
    assert (await view(server, first))["slug"] == "sales-bot"
    assert (await view(server, second))["slug"] == "sales-bot-2"


async def test_slugs_are_unique_per_account_only(server: RunningServer, fake_llm: FakeLLM) -> None:
    await create_gateway(server, fake_llm, name="Sales Bot")
    other = await other_tenant(server)
    theirs = await create_gateway(server, fake_llm, key=other, name="Sales Bot")
    assert (await view(server, theirs, key=other))["slug"] == "sales-bot"


async def test_list_shows_summaries_and_filters(server: RunningServer, fake_llm: FakeLLM) -> None:
    sales = await create_gateway(server, fake_llm, name="Sales Bot")
    await create_gateway(server, fake_llm, name="Support Desk", modelName="other-model")
    status, listing = await server.call("GET", "/api/v1/ai-gateways")
    assert status == 200
    assert sorted(g["slug"] for g in listing) == ["sales-bot", "support-desk"]
    entry = next(g for g in listing if g["id"] == sales)
    assert entry == {"id": sales, "name": "Sales Bot", "inferenceEndpoint": fake_llm.base_url,
                     "modelName": "fake-model", "slug": "sales-bot"}
    for needle, names in [("SALES", ["Sales Bot"]), ("other-model", ["Support Desk"]), ("zzz", [])]:
        status, found = await server.call("GET", "/api/v1/ai-gateways", params={"filter": needle})
        assert status == 200 and [g["name"] for g in found] == names


async def test_view_returns_every_parameter_and_masks_the_key(server: RunningServer, fake_llm: FakeLLM) -> None:
    given = {
        "temperature": 0.2, "topP": 0.8, "stop": "###", "maxCompletionTokens": 300,
        "systemInstruction": "You are Botline.", "flags": ["NoStopParameter", "NoReasoningEffort"],
        "protocolFunctions": [TOOL], "contextMaximumSize": 4000, "contextOverflowAction": "Truncate",
        "knowledgeBaseMaximumResults": 9, "rerankerName": "later", "additionalSettings": {"x": 1},
    }
    gateway_id = await create_gateway(server, fake_llm, name="Full", **given)
    body = await view(server, gateway_id)
    assert body["name"] == "Full" and body["slug"] == "full" and body["id"] == gateway_id
    parameters = body["parameters"]
    shown_tool = {**TOOL, "headers": {"X-Tool": MASK}}  # header values usually are credentials
    assert {name: parameters[name] for name in given} == {**given, "protocolFunctions": [shown_tool]}
    assert parameters["baseAddress"] == fake_llm.base_url and parameters["modelName"] == "fake-model"
    assert parameters["apiKey"] == MASK
    assert UPSTREAM_KEY not in str(body)


async def test_a_gateway_without_a_key_shows_null(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, apiKey=None)
    assert (await view(server, gateway_id))["parameters"]["apiKey"] is None


async def test_patch_merges_parameters_and_keeps_the_masked_key(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, temperature=0.3, systemInstruction="Be brief.")
    status, body = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}", json={
        "parameters": {"temperature": 0.9, "apiKey": MASK},
    })
    assert status == 200 and body["message"]
    parameters = (await view(server, gateway_id))["parameters"]
    assert parameters["temperature"] == 0.9
    assert parameters["systemInstruction"] == "Be brief."
    assert parameters["modelName"] == "fake-model" and parameters["apiKey"] == MASK
    status, answer = await ask(server, gateway_id, "still there?")
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "echo: still there?"
    assert fake_llm.requests[-1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert fake_llm.requests[-1].body["temperature"] == 0.9


async def test_patch_without_an_api_key_keeps_it_and_a_new_one_replaces_it(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, _ = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}", json={"name": "Renamed Bot"})
    assert status == 200
    body = await view(server, gateway_id)
    assert body["name"] == "Renamed Bot" and body["slug"] == "renamed-bot"
    assert (await ask(server, gateway_id))[0] == 200
    status, _ = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}",
                                  json={"parameters": {"apiKey": "sk-some-other-key"}})
    assert status == 200
    status, body = await ask(server, gateway_id)
    assert status >= 400 and "Incorrect API key provided" in body["message"]


@pytest.mark.parametrize(("parameters", "named"), [
    ({"temprature": 0.5}, "temprature"),
    ({"baseAddress": "ftp://example.com/v1"}, "baseAddress"),
    ({"flags": ["NoSystemInstruct", "MakeItGood"]}, "flags"),
    ({"temperature": "hot"}, "temperature"),
    ({"protocolFunctions": [{**TOOL, "callbackUrl": "file:///etc/passwd"}]}, "callbackUrl"),
])
async def test_invalid_parameters_are_a_400_naming_the_field(
    server: RunningServer, fake_llm: FakeLLM, parameters: dict[str, Any], named: str
) -> None:
    status, body = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm, **parameters))
    assert status == 400 and named in body["message"]
    gateway_id = await create_gateway(server, fake_llm, temperature=0.1)
    status, body = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}", json={"parameters": parameters})
    assert status == 400 and named in body["message"]
    assert (await view(server, gateway_id))["parameters"]["temperature"] == 0.1
    _, listing = await server.call("GET", "/api/v1/ai-gateways")
    assert len(listing) == 1


async def test_create_without_model_or_name_is_a_400(server: RunningServer, fake_llm: FakeLLM) -> None:
    status, body = await server.call("POST", "/api/v1/ai-gateways",
                                     json={"name": "x", "parameters": {"baseAddress": fake_llm.base_url}})
    assert status == 400 and "modelName" in body["message"]
    status, body = await server.call("POST", "/api/v1/ai-gateways", json={"parameters": gateway_body(fake_llm)})
    assert status == 400 and "name" in body["message"]


async def test_deleted_gateway_is_gone(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, body = await server.call("DELETE", f"/api/v1/ai-gateways/{gateway_id}")
    assert status == 200 and body["message"]
    status, body = await server.call("GET", f"/api/v1/ai-gateways/{gateway_id}")
    assert status == 404 and body["message"]
    assert (await ask(server, gateway_id))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/ai-gateways/{gateway_id}"))[0] == 404


async def test_validate_succeeds_with_the_right_key(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, body = await server.call("POST", f"/api/v1/ai-gateways/{gateway_id}/validate")
    assert status == 200 and body["success"] is True and body["message"]
    assert fake_llm.requests[-1].body["model"] == "fake-model"
    assert fake_llm.requests[-1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_validate_reports_the_upstreams_refusal_of_a_wrong_key(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(server, fake_llm, apiKey="sk-wrong-upstream-key")
    status, body = await server.call("POST", f"/api/v1/ai-gateways/{gateway_id}/validate")
    assert status == 200 and body["success"] is False
    assert "Incorrect API key provided" in body["message"]
    assert "sk-wrong-upstream-key" not in body["message"]


async def test_validate_reports_an_unreachable_upstream(server: RunningServer, fake_llm: FakeLLM) -> None:
    status, created = await server.call("POST", "/api/v1/ai-gateways", json={
        "name": "Nowhere", "parameters": {"baseAddress": UNREACHABLE, "apiKey": UPSTREAM_KEY, "modelName": "m"},
    })
    assert status == 200
    status, body = await server.call("POST", f"/api/v1/ai-gateways/{created['aiGatewayId']}/validate")
    assert status == 200 and body["success"] is False and body["message"]


async def test_validate_says_an_unreachable_upstream_could_not_be_reached(server: RunningServer) -> None:
    _, created = await server.call("POST", "/api/v1/ai-gateways", json={
        "name": "Nowhere", "parameters": {"baseAddress": UNREACHABLE, "apiKey": UPSTREAM_KEY, "modelName": "m"},
    })
    _, body = await server.call("POST", f"/api/v1/ai-gateways/{created['aiGatewayId']}/validate")
    assert body["success"] is False and "could not be reached" in body["message"]


async def test_validate_reports_an_unknown_model(server: RunningServer) -> None:
    async with FakeLLM(api_key=UPSTREAM_KEY, models=["gpt-known"]) as picky:
        gateway_id = await create_gateway(server, picky, modelName="gpt-imaginary")
        status, body = await server.call("POST", f"/api/v1/ai-gateways/{gateway_id}/validate")
    assert status == 200 and body["success"] is False
    assert "gpt-imaginary" in body["message"]


async def test_stats_count_requests_errors_and_tokens(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    other_id = await create_gateway(server, fake_llm, name="Other")
    fake_llm.script(Reply(text="one", prompt_tokens=10, completion_tokens=2),
                    Reply(text="two", prompt_tokens=11, completion_tokens=3),
                    Reply(status=500))
    assert (await ask(server, gateway_id))[0] == 200
    assert (await ask(server, gateway_id))[0] == 200
    status, failed = await ask(server, gateway_id)
    assert status >= 500 and status != 500 and failed["message"]
    status, stats = await server.call("GET", f"/api/v1/ai-gateways/{gateway_id}/stats")
    assert status == 200
    assert stats["gatewayId"] == gateway_id
    assert (stats["requests"], stats["errors"]) == (3, 1)
    assert (stats["inputTokens"], stats["outputTokens"], stats["totalTokens"]) == (21, 5, 26)
    assert stats["last24h"]["requests"] == 3 and stats["last24h"]["totalTokens"] == 26
    _, untouched = await server.call("GET", f"/api/v1/ai-gateways/{other_id}/stats")
    assert (untouched["requests"], untouched["errors"], untouched["totalTokens"]) == (0, 0, 0)


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None),
    ("PATCH", "", {"parameters": {"temperature": 1.5}}),
    ("DELETE", "", None),
    ("POST", "/validate", None),
    ("GET", "/stats", None),
])
async def test_another_account_cannot_reach_a_gateway(
    server: RunningServer, fake_llm: FakeLLM, method: str, suffix: str, body: Any
) -> None:
    gateway_id = await create_gateway(server, fake_llm, temperature=0.3)
    other = await other_tenant(server)
    requests_before = len(fake_llm.requests)
    status, answer = await server.call(method, f"/api/v1/ai-gateways/{gateway_id}{suffix}", key=other, json=body)
    assert status == 404 and answer["message"]
    assert len(fake_llm.requests) == requests_before
    assert (await view(server, gateway_id))["parameters"]["temperature"] == 0.3


async def test_another_account_cannot_use_or_list_a_gateway(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, name="Private Bot")
    other = await other_tenant(server)
    status, body = await ask(server, gateway_id, key=other)
    assert status == 404 and body["message"]
    assert (await ask(server, "private-bot", key=other))[0] == 404
    assert fake_llm.requests == []
    status, listing = await server.call("GET", "/api/v1/ai-gateways", key=other)
    assert status == 200 and listing == []


async def test_masked_header_values_sent_back_keep_the_stored_ones(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        tool = {**TOOL, "callbackUrl": site.answer("/order", Answer(body="shipped")),
                "headers": {"Authorization": "Bearer site-secret"}}
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[tool])
        shown = (await view(server, gateway_id))["parameters"]["protocolFunctions"]
        assert shown[0]["headers"] == {"Authorization": MASK} and "site-secret" not in str(shown)
        status, _ = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}",
                                      json={"parameters": {"protocolFunctions": shown}})
        assert status == 200
        fake_llm.script(Reply(tool_calls=[ToolCall("lookup_order", {"number": "7"})]), Reply(text="ok"))
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
        await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "order 7?"}])
        await client.close()
        assert site.received_at("/order")[0].headers["Authorization"] == "Bearer site-secret"


async def test_a_broken_json_schema_is_refused_when_saved(server: RunningServer, fake_llm: FakeLLM) -> None:
    broken = {**TOOL, "contentFormat": {"type": "objekt"}}
    status, body = await server.call(
        "POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm, protocolFunctions=[broken]))
    assert status == 400 and "contentFormat" in body["message"] and "JSON Schema" in body["message"]
