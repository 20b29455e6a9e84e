"""Review findings H2, M3, M4, M5 through a running server: a tenant (non-admin account) cannot make
botline connect to an internal service through any URL field, nor move a stored secret to a new
address, nor see internal URLs; the operator (admin account) still reaches a local model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from botline.accounts import IssuedKey, create_account
from botline.app import STORE
from botline.channels.evolution import EvolutionAdapter
from botline.channels.provider_http import ProviderHttp
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import EvolutionIntegration
from botline.egress import Egress, EgressPolicy
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.egress.servers import SECRET, InternalService, Site, text
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import client_body, prompt, public


def port_of(url: str) -> int:
    return URL(url).port or 80


@pytest.fixture
def settings_overrides(fake_llm: FakeLLM) -> dict[str, Any]:
    """The strict default, widened only for the model server (as an operator lists one on-prem)."""
    return {"security": {"egress": {"allow": [f"127.0.0.1:{port_of(fake_llm.base_url)}"]}}}


@pytest.fixture
async def internal() -> AsyncIterator[InternalService]:
    async with InternalService() as service:
        yield service


@pytest.fixture
async def tenant(server: RunningServer) -> IssuedKey:
    assert server.app is not None
    return await create_account(server.app[STORE], name="Tenant")


async def web_chat(server: RunningServer, fake: FakeLLM, key: str, session: dict[str, Any] | None = None,
                   **gateway: Any) -> str:
    gateway_id = await create_gateway(server, fake, key=key, **gateway)
    status, client = await server.call("POST", "/api/v1/web-chat-client", key=key, json=client_body(gateway_id))
    assert status == 200, client
    status, created = await server.call("POST", f"/api/v1/web-chat-client/{client['id']}/sessions", key=key,
                                        json=session or {})
    assert status == 200, created
    return str(created["accessKey"])


def callback(url: str) -> dict[str, Any]:
    return {"name": "lookup_order", "description": "Looks up an order by its number.",
            "callbackUrl": url, "headers": {"X-Internal-Token": "tok"},
            "contentFormat": {"type": "object", "properties": {"order": {"type": "string"}}}}


async def test_h2_the_reviews_reproduction_reaches_nothing_internal(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey, internal: InternalService
) -> None:
    """Instruction source with a chosen header, protocol-function callback and contextLocation, all
    pointing at an internal service: the turn is answered, nothing connects, nothing leaks upstream."""
    key = await web_chat(
        server, fake_llm, tenant.secret, session={"contextLocation": f"{internal.url}/context"},
        systemInstructionsSources=[{"name": "metadata", "url": f"{internal.url}/latest/meta-data/iam/",
                                    "headers": {"Metadata-Flavor": "Google"}}],
        protocolFunctions=[callback(f"{internal.url}/hook")],
    )
    fake_llm.script(Reply(tool_calls=[ToolCall("lookup_order", {"order": "42"})]), Reply(text="Done."))
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt("where is order 42?"))
    assert status == 200, answer
    assert internal.connections == 0
    upstream = str([request.body for request in fake_llm.requests])
    assert "INTERNAL-SECRET" not in upstream and "tok_internal" not in upstream
    assert "unavailable" in upstream  # the model was told the tool failed


async def test_h2_a_tenant_base_address_on_an_internal_host_is_refused_with_a_clear_error(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey, internal: InternalService
) -> None:
    gateway_id = await create_gateway(server, fake_llm, key=tenant.secret, baseAddress=f"{internal.url}/v1")
    status, validated = await server.call("POST", f"/api/v1/ai-gateways/{gateway_id}/validate", key=tenant.secret)
    assert status == 200 and validated["success"] is False
    assert "egress policy" in validated["message"] and "127.0.0.1" not in validated["message"]
    status, answer = await server.call("POST", "/v1/chat/completions", key=tenant.secret, json={
        "model": gateway_id, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 502 and "egress policy" in answer["message"]
    assert internal.connections == 0


async def test_h2_m5_a_function_source_on_an_internal_host_fails_without_naming_it(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey, internal: InternalService
) -> None:
    source = f"{internal.url}/functions?token=SECRET-IN-QUERY"
    key = await web_chat(server, fake_llm, tenant.secret, protocolFunctionSources=[source])
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt("hi"))
    assert status == 502
    assert "SECRET-IN-QUERY" not in str(answer) and "127.0.0.1" not in str(answer)
    assert internal.connections == 0 and fake_llm.requests == []


async def test_m5_an_operator_source_that_answers_garbage_is_not_quoted_to_the_chat_user(
    server: RunningServer, fake_llm: FakeLLM, internal: InternalService
) -> None:
    """The review's reproduction (with an admin gateway, which may reach the internal host)."""
    source = f"{internal.url}/functions?token=SECRET-IN-QUERY"
    key = await web_chat(server, fake_llm, server.admin_key, protocolFunctionSources=[source])
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt("hi"))
    assert status == 502 and answer["message"] == "A source this assistant depends on is unavailable right now."
    assert internal.connections == 1


async def test_the_operator_reaches_a_local_service_and_the_allow_list_opens_it_to_tenants(
    tmp_path: Path, fake_llm: FakeLLM, internal: InternalService
) -> None:
    allow = [f"127.0.0.1:{port_of(fake_llm.base_url)}", f"127.0.0.1:{internal.port}"]
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", security={"egress": {"allow": allow}})
    async with running_server(settings) as server:
        assert server.app is not None
        tenant = await create_account(server.app[STORE], name="Tenant")
        source = [{"name": "prices", "url": f"{internal.url}/prices"}]
        for key in (server.admin_key, tenant.secret):
            gateway_id = await create_gateway(server, fake_llm, key=key, systemInstructionsSources=source)
            status, _ = await server.call("POST", "/v1/chat/completions", key=key, json={
                "model": gateway_id, "messages": [{"role": "user", "content": "hi"}]})
            assert status == 200
    assert internal.connections == 2
    assert all(SECRET in request.body["messages"][0]["content"] for request in fake_llm.requests)


async def test_h2_an_evolution_endpoint_or_media_url_on_an_internal_host_is_never_contacted(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey, internal: InternalService
) -> None:
    gateway_id = await create_gateway(server, fake_llm, key=tenant.secret)
    _, client = await server.call("POST", "/api/v1/web-chat-client", key=tenant.secret, json=client_body(gateway_id))
    status, saved = await server.call("PUT", f"/api/v1/web-chat-client/{client['id']}/integrations",
                                      key=tenant.secret, json={
        "integrationType": "EvolutionApi",
        "integrations": {"evolutionIntegration": {"endpointUrl": internal.url, "instanceName": "shop",
                                                  "apiKey": "evo-key"}}})
    assert status == 200 and "not allowed" in saved["registration"]["error"]
    async with Egress(EgressPolicy()) as egress:
        adapter = EvolutionAdapter(ProviderHttp(egress, max_reply_bytes=1024, max_media_bytes=1024 * 1024))
        integration = EvolutionIntegration(endpoint_url=internal.url, instance_name="shop", api_key="evo-key")
        media = MediaRef(kind=MediaKind.IMAGE, url=f"{internal.url}/latest/meta-data/")
        assert await adapter.fetch_media(integration, media) is None  # a forged webhook's mediaUrl
    assert internal.connections == 0


async def test_m4_a_masked_api_key_never_follows_a_new_base_address(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey
) -> None:
    async with Site() as attacker:
        attacker.routes["/v1/chat/completions"] = text("{}")
        gateway_id = await create_gateway(server, fake_llm, key=tenant.secret)
        path = f"/api/v1/ai-gateways/{gateway_id}"
        status, answer = await server.call("PATCH", path, key=tenant.secret, json={
            "parameters": {"baseAddress": f"{attacker.url}/v1"}})
        assert status == 400 and "parameters.apiKey" in answer["message"]
        status, answer = await server.call("PATCH", path, key=tenant.secret, json={
            "parameters": {"baseAddress": f"{attacker.url}/v1", "apiKey": "********"}})
        assert status == 400
        await server.call("POST", f"{path}/validate", key=tenant.secret)
        _, view = await server.call("GET", path, key=tenant.secret)
        assert view["parameters"]["baseAddress"] == fake_llm.base_url  # nothing was half-written
        status, _ = await server.call("PATCH", path, key=tenant.secret, json={
            "parameters": {"baseAddress": fake_llm.base_url + "/", "temperature": 0.5}})
        assert status == 200  # the same address (a trailing slash aside) keeps the stored key
    assert attacker.received == []
    assert UPSTREAM_KEY in str(fake_llm.requests[-1].headers) if fake_llm.requests else True


async def test_m4_a_masked_header_never_follows_a_new_callback_url(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey
) -> None:
    gateway_id = await create_gateway(server, fake_llm, key=tenant.secret,
                                      protocolFunctions=[callback("https://shop.example/hook")])
    path = f"/api/v1/ai-gateways/{gateway_id}"
    _, view = await server.call("GET", path, key=tenant.secret)
    moved = view["parameters"]["protocolFunctions"]
    assert moved[0]["headers"] == {"X-Internal-Token": "********"}
    moved[0]["callbackUrl"] = "https://attacker.example/collect"
    status, answer = await server.call("PATCH", path, key=tenant.secret, json={
        "parameters": {"protocolFunctions": moved}})
    assert status == 400 and "protocolFunctions.0.headers.X-Internal-Token" in answer["message"]
    moved[0]["callbackUrl"] = "https://shop.example/hook"
    moved[0]["description"] = "Looks up an order by its number, now with tracking."
    status, _ = await server.call("PATCH", path, key=tenant.secret, json={"parameters": {"protocolFunctions": moved}})
    assert status == 200


async def test_m4_a_masked_evolution_key_never_follows_a_new_endpoint(
    server: RunningServer, fake_llm: FakeLLM, tenant: IssuedKey
) -> None:
    gateway_id = await create_gateway(server, fake_llm, key=tenant.secret)
    _, client = await server.call("POST", "/api/v1/web-chat-client", key=tenant.secret, json=client_body(gateway_id))
    path = f"/api/v1/web-chat-client/{client['id']}/integrations"
    section = {"endpointUrl": "https://evo.shop.example", "instanceName": "shop", "apiKey": "evo-secret-key"}
    body = {"integrationType": "EvolutionApi", "integrations": {"evolutionIntegration": section}}
    assert (await server.call("PUT", path, key=tenant.secret, json=body))[0] == 200
    moved = {**section, "endpointUrl": "https://attacker.example", "apiKey": "********"}
    status, answer = await server.call("PUT", path, key=tenant.secret, json={
        "integrationType": "EvolutionApi", "integrations": {"evolutionIntegration": moved}})
    assert status == 400 and "evolutionIntegration.apiKey" in answer["message"]
