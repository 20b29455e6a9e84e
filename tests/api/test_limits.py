"""Limits through a running server: a value at its limit is accepted, one character (or item) more is a
400 naming the field as the client wrote it, and nothing is written; a body as large as the server takes,
filled with one huge value, is refused the same way while /healthz keeps answering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from botline.app import STORE
from botline.domain.gateways import Gateway, GatewayParameters
from botline.domain.limits import (
    DOCUMENT_MAX,
    EMAIL_MAX,
    ITEMS_MAX,
    JSON_MAX_BYTES,
    LONG_TEXT_MAX,
    MAP_MAX,
    NAME_MAX,
    SECRET_MAX,
    TEXT_MAX,
    URL_MAX,
)
from tests.conftest import create_gateway, gateway_body
from tests.emulators.fake_llm import FakeLLM
from tests.support.loop_watch import HEALTHZ_BUDGET_SECONDS, collector_as_botline_serve_sets_it, slowest_healthz_during
from tests.support.server import RunningServer, free_port
from tests.support.webchat import client_body, open_session, prompt, public

__all__ = ["collector_as_botline_serve_sets_it"]  # autouse: collect garbage as `botline serve` does

MAX_BODY = 1024 * 1024
DEAD = f"http://127.0.0.1:{free_port()}"
FUNCTION = {"name": "lookup", "description": "Looks an order up.", "callbackUrl": "http://127.0.0.1:9/hook",
            "contentFormat": {"type": "object"}}
SOURCE = {"name": "faq", "url": "http://127.0.0.1:9/faq"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Separators counted generously: these bodies must reach the field limits (test_json_values.py
    # covers the separator budget).
    return {"server": {"max_body_bytes": MAX_BODY, "max_json_separators": MAX_BODY},
            "providers": {"telegram": {"api_url": DEAD, "mode": "webhook"}}}


@dataclass
class Objects:
    gateway: str
    client: str
    access_key: str


@pytest.fixture
async def objects(server: RunningServer, fake_llm: FakeLLM) -> Objects:
    gateway = await create_gateway(server, fake_llm)
    status, created = await server.call("POST", "/api/v1/web-chat-client", json=client_body(gateway))
    assert status == 200, created
    session = await open_session(server, created["id"])
    return Objects(gateway=gateway, client=created["id"], access_key=session["accessKey"])


async def snapshot(server: RunningServer, objects: Objects) -> list[Any]:
    """What a refused request must leave as it was: gateways, the chat client, sessions, the account."""
    reads = ["/api/v1/ai-gateways", f"/api/v1/ai-gateways/{objects.gateway}",
             f"/api/v1/web-chat-client/{objects.client}", f"/api/v1/web-chat-client/{objects.client}/sessions",
             "/api/v1/admin/accounts"]
    answers = [await server.call("GET", path) for path in reads]
    for answer in answers[3][1]:
        answer.pop("lastMessage", None)
    return answers


def text(size: int) -> str:
    return "x" * size


def url(size: int) -> str:
    head = "http://127.0.0.1:9/"
    return head + "a" * (size - len(head))


def gateway(fake: FakeLLM, **parameters: Any) -> dict[str, Any]:
    return gateway_body(fake, **parameters)


def json_of(size: int) -> dict[str, Any]:
    """An object that is exactly `size` bytes of compact JSON."""
    return {"k": "x" * (size - len('{"k":""}'))}


@dataclass(frozen=True)
class Case:
    """One limit class on one field: `body(n)` puts a value of size n there."""

    id: str
    method: str
    path: Callable[[Objects], str]
    body: Callable[[FakeLLM, int], dict[str, Any]]
    field: str
    limit: int


GATEWAYS: Callable[[Objects], str] = lambda o: "/api/v1/ai-gateways"  # noqa: E731
GATEWAY: Callable[[Objects], str] = lambda o: f"/api/v1/ai-gateways/{o.gateway}"  # noqa: E731
CLIENT: Callable[[Objects], str] = lambda o: f"/api/v1/web-chat-client/{o.client}"  # noqa: E731
SESSIONS: Callable[[Objects], str] = lambda o: f"/api/v1/web-chat-client/{o.client}/sessions"  # noqa: E731

CASES = [
    Case("name", "POST", GATEWAYS, lambda f, n: gateway(f, name=text(n)), "name", NAME_MAX),
    Case("url", "POST", GATEWAYS, lambda f, n: {**gateway(f), "parameters": {
        **gateway(f)["parameters"], "baseAddress": url(n)}}, "parameters.baseAddress", URL_MAX),
    Case("secret", "POST", GATEWAYS, lambda f, n: {**gateway(f), "parameters": {
        **gateway(f)["parameters"], "apiKey": text(n)}}, "parameters.apiKey", SECRET_MAX),
    Case("text", "POST", GATEWAYS, lambda f, n: gateway(f, systemInstructionsSources=[
        {**SOURCE, "description": text(n)}]), "parameters.systemInstructionsSources.0.description", TEXT_MAX),
    Case("long-text", "POST", SESSIONS, lambda f, n: {"extraContext": text(n)}, "extraContext", LONG_TEXT_MAX),
    Case("document", "PATCH", GATEWAY, lambda f, n: {"parameters": {"systemInstruction": text(n)}},
         "parameters.systemInstruction", DOCUMENT_MAX),
    Case("image-url", "PUT", CLIENT, lambda f, n: {"clientParameters": {"logoImageUrl": url(n)}},
         "clientParameters.logoImageUrl", DOCUMENT_MAX),
    Case("items", "POST", GATEWAYS, lambda f, n: gateway(f, skills=["s"] * n), "parameters.skills", ITEMS_MAX),
    Case("headers", "PATCH", GATEWAY, lambda f, n: {"parameters": {"protocolFunctions": [
        {**FUNCTION, "headers": {f"X-H{i}": "v" for i in range(n)}}]}},
        "parameters.protocolFunctions.0.headers", MAP_MAX),
    Case("json", "PATCH", GATEWAY, lambda f, n: {"parameters": {"additionalSettings": json_of(n)}},
         "parameters.additionalSettings", JSON_MAX_BYTES),
    Case("string-map", "POST", SESSIONS, lambda f, n: {"metadata": {f"k{i}": "v" for i in range(n)}},
         "metadata", MAP_MAX),
    Case("email", "PUT", lambda o: "/api/v1/accounts", lambda f, n: {"parameters": {"notifications": {
        "emails": [f"{'a' * (n - len('@example.org'))}@example.org"]}}}, "parameters.notifications.emails.0",
         EMAIL_MAX),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_value_at_its_limit_is_accepted_and_one_more_is_a_400_naming_the_field(
    server: RunningServer, fake_llm: FakeLLM, objects: Objects, case: Case
) -> None:
    before = await snapshot(server, objects)
    status, body = await server.call(case.method, case.path(objects), json=case.body(fake_llm, case.limit + 1))
    assert status == 400, body
    assert body["message"].startswith(f"Invalid value for {case.field}: "), body
    assert await snapshot(server, objects) == before
    status, body = await server.call(case.method, case.path(objects), json=case.body(fake_llm, case.limit))
    assert status == 200, body


async def test_an_integration_secret_over_its_limit_names_it_under_its_section(
    server: RunningServer, objects: Objects
) -> None:
    before = await snapshot(server, objects)
    status, body = await server.call("PUT", f"/api/v1/web-chat-client/{objects.client}/integrations", json={
        "integrationType": "Telegram", "integrations": {"telegramIntegration": {"botToken": text(SECRET_MAX + 1)}}})
    assert status == 400
    assert body["message"].startswith("Invalid value for integrations.telegramIntegration.botToken: ")
    assert await snapshot(server, objects) == before


@pytest.mark.parametrize(("path", "parameter"), [
    ("/api/v1/ai-gateways?filter=", "filter"), ("/api/v1/memories?filter=", "filter"),
    ("/api/v1/admin/accounts?query=", "query"),
])
async def test_a_query_parameter_over_its_limit_is_a_400_naming_it(
    server: RunningServer, path: str, parameter: str
) -> None:
    status, body = await server.call("GET", path + "q" * NAME_MAX)
    assert status == 200
    status, body = await server.call("GET", path + "q" * (NAME_MAX + 1))
    assert status == 400 and body["message"] == f"Query parameter {parameter} must have at most {NAME_MAX} characters."


async def test_openai_fields_and_extra_parameters_are_bounded(server: RunningServer, objects: Objects) -> None:
    base = {"model": objects.gateway, "messages": [{"role": "user", "content": "hi"}]}
    for extra, field in [({"user": text(NAME_MAX + 1)}, "user"),
                         ({"tools": [{"type": "function"}] * (ITEMS_MAX + 1)}, "tools"),
                         ({"logit_bias": json_of(JSON_MAX_BYTES + 1)}, "logit_bias")]:
        status, body = await server.call("POST", "/v1/chat/completions", json={**base, **extra})
        assert status == 400 and body["message"].startswith(f"Invalid value for {field}: "), body
        assert body["error"]["type"] == "invalid_request_error"


def near_full(fill: Callable[[int], dict[str, Any]]) -> bytes:
    """`fill(n)` as compact JSON, with n chosen so the body is just under MAX_BODY."""
    low, high = 0, MAX_BODY
    while low < high:  # the largest n whose body still fits
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(orjson.dumps(fill(middle))) <= MAX_BODY else (low, middle - 1)
    body = orjson.dumps(fill(low))
    assert len(body) > MAX_BODY - 1024
    return body


HUGE = [
    ("gateway-string", "POST", GATEWAYS, lambda f: near_full(lambda n: gateway(f, systemInstruction=text(n))),
     "parameters.systemInstruction"),
    ("gateway-list", "POST", GATEWAYS, lambda f: near_full(lambda n: gateway(f, skills=["s"] * n)),
     "parameters.skills"),
    ("gateway-patch-list", "PATCH", GATEWAY, lambda f: near_full(lambda n: {"parameters": {
        "protocolFunctions": [{}] * n}}), "parameters.protocolFunctions"),
    ("client-string", "PUT", CLIENT, lambda f: near_full(lambda n: {"clientParameters": {"customScripts": text(n)}}),
     "clientParameters.customScripts"),
    ("session-map", "POST", SESSIONS, lambda f: near_full(lambda n: {"metadata": {
        f"k{i}": "v" for i in range(n)}}), "metadata"),
    ("prompt-string", "POST", lambda o: public(o.access_key, "/prompt"), lambda f: near_full(
        lambda n: prompt(text(n))), "prompt.content"),
    ("prompt-list", "POST", lambda o: public(o.access_key, "/prompt"), lambda f: near_full(
        lambda n: prompt([{"type": "text", "text": "x"}] * n)), "prompt.content"),
    ("openai-list", "POST", lambda o: "/v1/chat/completions", lambda f: near_full(lambda n: {
        "model": "any", "messages": [{"role": "user", "content": "hi"}], "tools": [{}] * n}), "tools"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), [case[1:] for case in HUGE], ids=[c[0] for c in HUGE])
async def test_a_body_near_the_size_cap_with_one_huge_value_is_a_400_while_healthz_answers(
    server: RunningServer, fake_llm: FakeLLM, objects: Objects, method: str, path: Callable[[Objects], str],
    body: Callable[[FakeLLM], bytes], field: str,
) -> None:
    payload = body(fake_llm)
    before = await snapshot(server, objects)
    (status, answer), slowest = await slowest_healthz_during(server, server.call(
        method, path(objects), data=payload, headers={"Content-Type": "application/json"}))
    assert status == 400 and answer["message"].startswith(f"Invalid value for {field}: "), answer
    assert slowest < HEALTHZ_BUDGET_SECONDS
    assert await snapshot(server, objects) == before
    assert not fake_llm.requests


async def test_a_gateway_saved_before_a_limit_it_now_breaks_can_still_be_deleted(server: RunningServer) -> None:
    """Records are checked when read back: one stored by an earlier version past a new limit cannot load,
    but DELETE does not read it (docs/decisions.md, "Records saved before the hardening limits")."""
    assert server.app is not None
    store = server.app[STORE]
    admin = next(a for a in await store.accounts.list() if a.is_admin)
    oversized = GatewayParameters.model_construct(
        base_address="http://127.0.0.1:9/v1", model_name="m", system_instruction="x" * (DOCUMENT_MAX + 1))
    await store.gateways.create(Gateway.model_construct(
        id="legacy", account_id=admin.id, name="Legacy", slug="legacy", parameters=oversized,
        created_at=datetime.now(UTC), updated_at=datetime.now(UTC)))
    status, _ = await server.call("DELETE", "/api/v1/ai-gateways/legacy")
    assert status == 200
    assert (await server.call("DELETE", "/api/v1/ai-gateways/legacy"))[0] == 404
