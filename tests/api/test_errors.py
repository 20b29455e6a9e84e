"""The error boundary, request ids, probes and secrecy: bad input is a JSON 4xx, never a 500, and no
secret ever reaches a log line or a GET response."""

from __future__ import annotations

import logging
import re
from typing import Any

import openai
import orjson
import pytest
from multidict import CIMultiDict

from botline.logs import JsonFormatter
from tests.conftest import UPSTREAM_KEY, create_gateway, gateway_body
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import ADMIN_KEY, RunningServer

MAX_BODY = 2048
FULL_KEY = re.compile(r"sk-[A-Za-z0-9_-]{32,}")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"server": {"max_body_bytes": MAX_BODY}}


async def raw(server: RunningServer, method: str, path: str, *, data: bytes | str | None = None,
              headers: dict[str, str] | None = None, key: str | None = None) -> tuple[int, CIMultiDict[str], str]:
    """One request; (status, response headers, body text); `key=""` sends no Authorization."""
    all_headers = {**({} if key == "" else server.headers(key)), **(headers or {})}
    async with server.http.request(method, server.url + path, data=data, headers=all_headers) as response:
        return response.status, CIMultiDict(response.headers), await response.text()


async def json_routes(server: RunningServer, fake: FakeLLM) -> list[tuple[str, str]]:
    """Every route that reads a JSON body."""
    gateway_id = await create_gateway(server, fake)
    _, accounts = await server.call("GET", "/api/v1/admin/accounts")
    account_id = accounts[0]["id"]
    return [
        ("POST", "/api/v1/ai-gateways"),
        ("PATCH", f"/api/v1/ai-gateways/{gateway_id}"),
        ("POST", "/api/v1/accounts/api-key"),
        ("PUT", "/api/v1/accounts"),
        ("POST", "/api/v1/auth/login"),
        ("PATCH", f"/api/v1/admin/accounts/{account_id}"),
        ("POST", f"/api/v1/admin/accounts/{account_id}/balance-adjustments"),
        ("POST", "/v1/chat/completions"),
    ]


@pytest.mark.parametrize("body", [b'{"name": "x",', b"[1, 2]", b"", b"null", b'"text"', b"42", b"\xff\xfe{}"],
                         ids=["malformed", "array", "empty", "null", "string", "number", "not-utf8"])
async def test_a_body_that_is_not_a_json_object_is_a_400(
    server: RunningServer, fake_llm: FakeLLM, body: bytes
) -> None:
    for method, path in await json_routes(server, fake_llm):
        status, headers, text = await raw(server, method, path, data=body,
                                          headers={"Content-Type": "application/json"})
        assert status == 400, (method, path, text)
        assert headers["Content-Type"].startswith("application/json")
        assert "Traceback" not in text and '"message"' in text


@pytest.mark.parametrize(("method", "path", "payload", "field"), [
    ("POST", "/api/v1/accounts/api-key", {"label": 5}, "label"),
    ("POST", "/api/v1/accounts/api-key", {"duration": "soon"}, "duration"),
    ("PUT", "/api/v1/accounts", {"parameters": {"allowConversationsLogging": "perhaps"}}, "allowConversationsLogging"),
    ("POST", "/api/v1/auth/login", {"loginKey": 12345}, "loginKey"),
    ("POST", "/api/v1/ai-gateways", {"name": ["a"], "parameters": {}}, "name"),
    ("POST", "/api/v1/ai-gateways", {"name": "a", "parameters": "all"}, "parameters"),
    ("POST", "/v1/chat/completions", {"model": 7, "messages": []}, "model"),
])
async def test_a_field_of_the_wrong_type_is_a_400_naming_it(
    server: RunningServer, method: str, path: str, payload: Any, field: str
) -> None:
    status, body = await server.call(method, path, json=payload)
    assert status == 400 and field in body["message"]


async def test_a_field_of_the_wrong_type_on_an_existing_gateway_is_a_400(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, body = await server.call("POST", "/v1/chat/completions", json={"model": gateway_id, "messages": "hi"})
    assert status == 400 and "messages" in body["message"]
    assert fake_llm.requests == []
    status, body = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}",
                                     json={"parameters": {"maxCompletionTokens": "lots"}})
    assert status == 400 and "maxCompletionTokens" in body["message"]


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v1/ai-gateways/a/b/c"])
async def test_an_unknown_route_is_a_json_404(server: RunningServer, path: str) -> None:
    status, body = await server.call("GET", path)
    assert status == 404 and body["message"]


async def test_an_unknown_openai_route_is_a_404_the_sdk_understands(server: RunningServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.embeddings.create(model="x", input="hello")
    assert caught.value.status_code == 404 and caught.value.message
    await client.close()


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/v1/ai-gateways"), ("DELETE", "/v1/chat/completions"), ("POST", "/healthz"),
])
async def test_a_wrong_method_is_a_json_405(server: RunningServer, method: str, path: str) -> None:
    status, body = await server.call(method, path)
    assert status == 405 and method in body["message"]


async def test_a_405_says_which_methods_are_allowed(server: RunningServer) -> None:
    status, headers, _ = await raw(server, "PUT", "/api/v1/ai-gateways")
    assert status == 405
    assert set(headers.get("Allow", "").replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/ai-gateways"), ("POST", "/v1/chat/completions"), ("PUT", "/api/v1/accounts"),
    ("POST", "/api/v1/auth/login"),
])
async def test_a_body_over_the_configured_cap_is_a_json_413(server: RunningServer, method: str, path: str) -> None:
    oversize = '{"name": "' + "x" * (MAX_BODY + 100) + '"}'
    status, headers, text = await raw(server, method, path, data=oversize,
                                      headers={"Content-Type": "application/json"})
    assert status == 413, text
    assert headers["Content-Type"].startswith("application/json") and '"message"' in text
    status, _ = await server.call("POST", "/api/v1/accounts/api-key", json={"label": "y" * 150})
    assert status == 200  # a body under the cap still goes through


@pytest.mark.parametrize("content_type", ["text/html", "application/x-www-form-urlencoded", "application/xml"])
async def test_a_non_json_content_type_is_a_415(server: RunningServer, content_type: str) -> None:
    status, _, text = await raw(server, "POST", "/api/v1/accounts/api-key", data='{"label": "x"}',
                                headers={"Content-Type": content_type})
    assert status == 415 and '"message"' in text
    _, keys = await server.call("GET", "/api/v1/accounts/api-key")
    assert len(keys["apiKeys"]) == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-unknown"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
async def test_a_missing_or_unknown_key_is_a_json_401(server: RunningServer, headers: dict[str, str]) -> None:
    for path in ("/api/v1/ai-gateways", "/api/v1/accounts/api-key", "/v1/models", "/api/v1/information/balance"):
        status, response_headers, text = await raw(server, "GET", path, key="", headers=headers)
        assert status == 401 and '"message"' in text
        assert response_headers["Content-Type"].startswith("application/json")


async def test_every_answer_carries_a_request_id(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    chat = orjson.dumps({"model": gateway_id, "messages": [{"role": "user", "content": "hi"}]}).decode()
    ids = []
    for method, path, data, key in [
        ("GET", "/healthz", None, ""), ("GET", "/api/v1/ai-gateways", None, None),
        ("GET", "/api/v1/ai-gateways", None, ""), ("GET", "/nope", None, None),
        ("PUT", "/api/v1/ai-gateways", None, None), ("POST", "/api/v1/ai-gateways", "{", None),
        ("POST", "/v1/chat/completions", chat, None), ("PUT", "/api/v1/accounts", "x" * (MAX_BODY + 1), None),
    ]:
        status, headers, _ = await raw(server, method, path, data=data, key=key,
                                       headers={"Content-Type": "application/json"})
        assert re.fullmatch(r"[0-9a-f]{16}", headers.get("X-Request-Id", "")), (method, path, status)
        ids.append(headers["X-Request-Id"])
    assert len(set(ids)) == len(ids)
    _, headers, _ = await raw(server, "GET", "/healthz", headers={"X-Request-Id": "trace-abc-123"})
    assert headers["X-Request-Id"] == "trace-abc-123"


async def test_a_streamed_answer_carries_a_request_id(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    chat = orjson.dumps({"model": gateway_id, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).decode()
    status, headers, text = await raw(server, "POST", "/v1/chat/completions", data=chat,
                                      headers={"Content-Type": "application/json"})
    assert status == 200 and text.rstrip().endswith("data: [DONE]")
    assert re.fullmatch(r"[0-9a-f]{16}", headers.get("X-Request-Id", ""))


async def test_probes_answer(server: RunningServer) -> None:
    for path in ("/healthz", "/readyz"):
        status, _, text = await raw(server, "GET", path, key="")
        assert status == 200 and '"ok"' in text


async def test_secrets_never_reach_logs_or_get_responses(
    server: RunningServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    # The test runner's aiohttp access log prints query strings; `botline serve` turns it off
    # (access_log=None) and logs its own line with the path only. (Set first: set_level also sets
    # the capture handler's level, which the second call puts back to INFO.)
    caplog.set_level(logging.WARNING, logger="aiohttp.access")
    caplog.set_level(logging.INFO)
    rotated_upstream_key = "sk-upstream-rotated-value-also-never-leaks"
    secrets = {UPSTREAM_KEY, rotated_upstream_key, ADMIN_KEY}

    gateway_id = await create_gateway(server, fake_llm, name="Secret Bot", systemInstruction="Be kind.")
    _, created = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(
        fake_llm, name="Wrong Key Bot", apiKey="sk-upstream-wrong-key-that-never-leaks-either"))
    secrets.add("sk-upstream-wrong-key-that-never-leaks-either")
    wrong_gateway = created["aiGatewayId"]
    for label in ("ci", "deploy"):
        _, body = await server.call("POST", "/api/v1/accounts/api-key", json={"label": label, "duration": 30})
        secrets.add(body["grantKey"])
    _, login = await server.call("POST", "/api/v1/auth/login", json={"loginKey": ADMIN_KEY})
    secrets.add(login["accessToken"])
    await server.call("POST", "/api/v1/auth/login", json={"loginKey": "sk-a-wrong-login-key-typed-by-someone"})
    await server.call("GET", "/api/v1/ai-gateways", key="sk-a-wrong-bearer-key-typed-by-someone")
    secrets |= {"sk-a-wrong-login-key-typed-by-someone", "sk-a-wrong-bearer-key-typed-by-someone"}

    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=login["accessToken"], max_retries=0)
    answer = await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "echo: hi"
    stream = await client.chat.completions.create(model="secret-bot", stream=True,
                                                  messages=[{"role": "user", "content": "again"}])
    assert [chunk async for chunk in stream]
    fake_llm.script(Reply(status=500))
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model=wrong_gateway, messages=[{"role": "user", "content": "x"}])
    await client.close()
    async with server.http.get(server.url + "/v1/models", params={"api-key": login["accessToken"]}) as response:
        assert response.status == 200
    await server.call("POST", f"/api/v1/ai-gateways/{gateway_id}/validate")
    await server.call("POST", f"/api/v1/ai-gateways/{wrong_gateway}/validate")
    status, _ = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway_id}",
                                  json={"parameters": {"apiKey": rotated_upstream_key}})
    assert status == 200
    assert fake_llm.requests  # the upstream really was called with the secret

    _, accounts = await server.call("GET", "/api/v1/admin/accounts")
    account_id = accounts[0]["id"]
    bodies = []
    for path in ("/api/v1/accounts/api-key", "/api/v1/ai-gateways", f"/api/v1/ai-gateways/{gateway_id}",
                 f"/api/v1/ai-gateways/{wrong_gateway}", f"/api/v1/ai-gateways/{gateway_id}/stats",
                 "/api/v1/information/balance", "/api/v1/admin/accounts", f"/api/v1/admin/accounts/{account_id}",
                 f"/api/v1/admin/accounts/{account_id}/usage", "/v1/models", "/healthz", "/readyz"):
        status, _, text = await raw(server, "GET", path)
        assert status == 200, path
        bodies.append(text)

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert any("/v1/chat/completions" in line for line in lines)  # the access log was captured
    for text in [*lines, *bodies]:
        for secret in secrets:
            assert secret not in text
        assert not FULL_KEY.search(text), text


@pytest.mark.parametrize("name", ["x" * 300, "..%2F..%2Fapi%2Fhttp.py", "vendor", "nothing.css"],
                         ids=["name-too-long", "traversal", "folder", "missing"])
async def test_a_static_file_that_cannot_be_served_is_a_json_404(server: RunningServer, name: str) -> None:
    # A name longer than the OS allows used to be a 500 from aiohttp's static route.
    status, headers, text = await raw(server, "GET", f"/static/{name}", key="")
    assert status == 404 and headers["Content-Type"].startswith("application/json") and '"message"' in text
    status, headers, text = await raw(server, "GET", "/static/chat.css", key="")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and text
