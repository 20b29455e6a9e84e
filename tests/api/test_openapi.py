"""GET /openapi.json: generated from the routes, complete, and the bad-input rules hold for every
operation it lists with a JSON body (so a new route is covered as soon as it is documented)."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from botline.api.openapi import PARAMETER, describe, documented_routes
from botline.app import build_app
from botline.domain.gateways import GatewayParameters
from tests.api.test_errors import raw
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer, free_port, make_settings
from tests.support.webchat import client_body, open_session

MAX_BODY = 4096
DEAD = f"http://127.0.0.1:{free_port()}"
APP = build_app(make_settings("sqlite:///unused.db"))
DOCUMENT = describe(APP)
JSON_BODY_OPERATIONS = [
    (method.upper(), path) for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items() if "requestBody" in operation
]
RAW_BODY_PATHS = {"/api/v1/webhooks/{integrationType}/{clientId}/{token}"}
"""Webhooks read the provider's raw bytes (signatures are computed on them), whatever the content type."""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"server": {"max_body_bytes": MAX_BODY},
            "providers": {"telegram": {"api_url": DEAD, "mode": "webhook"}, "zapi": {"api_url": DEAD}}}


def test_every_route_is_described() -> None:
    undocumented = [f"{method} {path}" for method, path, operation in documented_routes(APP) if operation is None]
    assert not undocumented, f"add @documented(...) to the handlers of: {undocumented}"
    listed = {(method.upper(), PARAMETER.sub("{}", path)) for path, ops in DOCUMENT["paths"].items() for method in ops}
    routed = {(method, PARAMETER.sub("{}", path)) for method, path, _ in documented_routes(APP)}
    assert listed == routed
    parameters = [p for ops in DOCUMENT["paths"].values() for op in ops.values() for p in op["parameters"]]
    assert all(p["description"] for p in parameters), "describe new path variables in openapi.PATH_PARAMETERS"


def test_bodies_are_described_by_the_models_the_handlers_validate_with() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    create = DOCUMENT["paths"]["/api/v1/ai-gateways"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/GatewayBody"}
    assert schemas["GatewayBody"]["required"] == ["name", "parameters"]
    assert set(schemas["GatewayParameters"]["properties"]) == {
        field.alias for field in GatewayParameters.model_fields.values()}
    assert {"model", "messages"} <= set(schemas["ChatCompletionBody"]["required"])


async def test_the_description_is_served_to_anyone(server: RunningServer) -> None:
    status, headers, _ = await raw(server, "GET", "/openapi.json", key="")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    _, served = await server.call("GET", "/openapi.json", key="")
    assert served["openapi"] == "3.1.0" and served["paths"] == DOCUMENT["paths"]
    operations = served["paths"]
    assert operations["/api/v1/ai-gateways"]["get"]["security"] == [{"apiKey": []}, {"apiKeyQuery": []}]
    assert operations["/api/v1/admin/accounts"]["get"]["security"][0] == {"adminKey": []}
    for public in ("/api/v1/auth/login", "/api/v1/public/chat-clients/{accessKey}/prompt", "/healthz",
                   "/api/v1/webhooks/{integrationType}/{clientId}/{token}"):
        assert all(op["security"] == [] for op in operations[public].values()), public
    prompt = operations["/api/v1/public/chat-clients/{accessKey}/prompt"]["post"]
    assert [p["name"] for p in prompt["parameters"]] == ["accessKey", "stream"]


async def _real_path(server: RunningServer, fake: FakeLLM, template: str) -> str:
    """`template` with the ids of real objects, so the handler gets as far as reading the body."""
    gateway = await create_gateway(server, fake)
    _, client = await server.call("POST", "/api/v1/web-chat-client", json=client_body(gateway))
    _, saved = await server.call("PUT", f"/api/v1/web-chat-client/{client['id']}/integrations", json={
        "integrationType": "Zapi", "integrations": {"zapiIntegration": {"instanceId": "i", "instanceToken": "t"}}})
    session = await open_session(server, client["id"])
    _, accounts = await server.call("GET", "/api/v1/admin/accounts")
    _, connection = await server.call("POST", "/api/v1/ai/llm", json={"name": "c", "aiType": "OTHER",
                                                                      "endpoint": fake.base_url})
    _, policy = await server.call("POST", "/api/v1/policy", json={"name": "p", "content": "Be kind.",
                                                                  "riskType": "LOW", "actionType": 0})
    ids = {"/api/v1/ai-gateways/": gateway, "/api/v1/ai/llm/": connection["aiLlmId"],
           "/api/v1/policy/": policy["policy"]["id"]}
    values = {"id": next((i for prefix, i in ids.items() if template.startswith(prefix)), client["id"]),
              "accessKey": session["accessKey"], "sessionId": session["sessionId"], "accountId": accounts[0]["id"],
              "clientId": client["id"],
              "integrationType": "Zapi", "token": saved["webhookUrl"].rsplit("/", 1)[1]}
    if template.startswith("/api/v1/batch/"):
        values.update(await _batch_ids(server, gateway))
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], template)


async def _batch_ids(server: RunningServer, gateway: str) -> dict[str, str]:
    """A workflow, a paused job (nothing runs) and one item in it."""
    _, workflow = await server.call("POST", "/api/v1/batch/workflows", json={
        "modelName": gateway, "options": {"instruction": "Classify.", "resultSchema": {"type": "object"}}})
    base = f"/api/v1/batch/workflows/{workflow['id']}/jobs"
    _, job = await server.call("POST", base)
    await server.call("PATCH", f"{base}/{job['id']}", json={"state": "pause"})
    form = aiohttp.FormData()
    form.add_field("items", b'{"ticket": 1}\n', filename="items.jsonl")
    await server.call("POST", f"{base}/{job['id']}/items", data=form)
    _, items = await server.call("GET", f"{base}/{job['id']}/items")
    return {"id": workflow["id"], "jobId": job["id"], "itemId": items[0]["id"]}


async def _state(server: RunningServer) -> list[Any]:
    """What a refused request must leave untouched."""
    paths = ["/api/v1/ai-gateways", "/api/v1/web-chat-client", "/api/v1/accounts/api-key", "/api/v1/admin/accounts"]
    _, clients = await server.call("GET", "/api/v1/web-chat-client")
    for client in clients:
        paths += [f"/api/v1/web-chat-client/{client['id']}", f"/api/v1/web-chat-client/{client['id']}/sessions"]
    state = [(await server.call("GET", path))[1] for path in paths]
    for session in (await server.call("GET", f"/api/v1/web-chat-client/{clients[0]['id']}/sessions"))[1]:
        state.append((await server.call("GET", f"/api/v1/public/chat-clients/{session['sessionKey']}"))[1])
    return state


@pytest.mark.parametrize(("method", "template"), JSON_BODY_OPERATIONS)
async def test_bad_bodies_get_a_json_4xx_and_change_nothing(
    server: RunningServer, fake_llm: FakeLLM, method: str, template: str
) -> None:
    path = await _real_path(server, fake_llm, template)
    before = await _state(server)
    json_type = {"Content-Type": "application/json"}
    refusals = [
        (413, '{"name": "' + "x" * (MAX_BODY + 100) + '"}', json_type),
        (400, '{"name": "x",', json_type),
        (400, "[1, 2]", json_type),
        (400, '"text"', json_type),
    ]
    if template not in RAW_BODY_PATHS:
        refusals.append((415, '{"name": "x"}', {"Content-Type": "text/html"}))
        refusals.append((415, "name=x", {"Content-Type": "application/x-www-form-urlencoded"}))
    for expected, body, headers in refusals:
        status, answer_headers, text = await raw(server, method, path, data=body, headers=headers)
        assert status == expected, (body[:40], headers, text)
        assert answer_headers["Content-Type"].startswith("application/json") and '"message"' in text
    assert await _state(server) == before
    assert fake_llm.requests == []
