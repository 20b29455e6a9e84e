"""The gateway as an MCP tool (/v1/mcp/inference), served by the SDK's server side and proven with the
SDK's client over Streamable HTTP: SSE answers, JSON answers, the handshake-free 2026 protocol, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from botline.accounts import create_account
from botline.app import STORE
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

PATH = "/v1/mcp/inference"


@asynccontextmanager
async def mcp_client(server: RunningServer, headers: dict[str, str], *, seen: list[str] | None = None,
                     accept: str | None = None) -> AsyncIterator[ClientSession]:
    """The SDK's client, not yet initialized. `seen` collects the content type of every answer to a
    POST; `accept` replaces the Accept header the SDK sends (a client that takes JSON only)."""

    async def narrow(request: httpx2.Request) -> None:
        if accept is not None:
            request.headers["accept"] = accept

    async def record(response: httpx2.Response) -> None:
        if seen is not None and response.request.method == "POST" and response.status_code == 200:
            seen.append(response.headers.get("content-type", "").split(";")[0])

    async with (
        httpx2.AsyncClient(headers={**server.headers(), **headers},
                           event_hooks={"request": [narrow], "response": [record]}) as http,
        streamable_http_client(server.url + PATH, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        yield session


def texts(result: types.CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, types.TextContent)]


async def test_the_sdk_client_lists_and_calls_the_gateway_over_sse(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, systemInstruction="You are the support desk.")
    fake_llm.script(Reply(text="Your order ships tomorrow."))
    headers = {"X-Mcp-Model-Name": gateway_id, "X-Mcp-Tool-Name": "support", "X-Mcp-User": "agent-7"}
    seen: list[str] = []
    async with mcp_client(server, headers, seen=seen) as session:
        initialized = await session.initialize()
        assert initialized.server_info.name == "botline" and initialized.capabilities.tools is not None
        [tool] = (await session.list_tools()).tools
        assert tool.name == "invoke_support" and tool.input_schema["required"] == ["prompt"]
        result = await session.call_tool("invoke_support", {"prompt": "Where is my order?"})
    assert not result.is_error and texts(result) == ["Your order ships tomorrow."]
    assert seen == ["text/event-stream"] * 3  # initialize, tools/list, tools/call: streamed
    [request] = fake_llm.requests
    messages = request.body["messages"]
    assert messages[0]["role"] == "system" and "You are the support desk." in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Where is my order?"}
    assert request.body["user"] == "agent-7"


async def test_a_client_that_accepts_only_json_gets_json(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="Plain JSON."))
    seen: list[str] = []
    async with mcp_client(server, {"X-Mcp-Model-Name": gateway_id, "X-Mcp-Tool-Name": "desk"}, seen=seen,
                          accept="application/json") as session:
        await session.initialize()
        result = await session.call_tool("invoke_desk", {"prompt": "Hi"})
    assert texts(result) == ["Plain JSON."]
    assert len(seen) >= 2 and set(seen) == {"application/json"}


async def test_the_handshake_free_protocol_version(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="No handshake needed."))
    seen: list[str] = []
    async with mcp_client(server, {"X-Mcp-Model-Name": gateway_id, "X-Mcp-Tool-Name": "desk"}, seen=seen) as session:
        discovered = await session.discover()
        assert set(discovered.supported_versions) & set(MODERN_PROTOCOL_VERSIONS)
        [tool] = (await session.list_tools()).tools
        result = await session.call_tool(tool.name, {"prompt": "Hi"})
    assert texts(result) == ["No handshake needed."]
    assert seen and set(seen) == {"application/json"}  # a quick answer is one JSON object, even to an SSE client


async def test_errors_are_clear(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    status, answer = await server.call("POST", PATH, json=listing)
    assert status == 400 and "X-Mcp-Model-Name" in answer["message"]
    status, answer = await server.call("POST", PATH, json=listing, headers={"X-Mcp-Model-Name": "nope"})
    assert status == 404 and "nope" in answer["message"]
    status, _ = await server.call("POST", PATH, json=listing, headers={"X-Mcp-Model-Name": gateway_id}, key="sk-wrong")
    assert status == 401
    status, answer = await server.call("POST", PATH, json=listing, headers={
        "X-Mcp-Model-Name": gateway_id, "X-Mcp-Tool-Name": "no spaces"})
    assert status == 400 and "X-Mcp-Tool-Name" in answer["message"]
    status, answer = await server.call("POST", PATH, json=[listing], headers={"X-Mcp-Model-Name": gateway_id})
    assert status == 400 and "JSON object" in answer["message"]
    for method in ("GET", "DELETE"):  # stateless: no server-to-client stream, no session to end
        assert (await server.call(method, PATH, headers={"X-Mcp-Model-Name": gateway_id}))[0] == 405
    status, answer = await server.call("POST", PATH, json={"jsonrpc": "2.0", "id": 2, "method": "prompts/list"},
                                       headers={"X-Mcp-Model-Name": gateway_id, "Accept": "application/json",
                                                "MCP-Protocol-Version": "2025-11-25"})
    assert status == 200 and answer["id"] == 2 and answer["error"]["code"] == METHOD_NOT_FOUND
    async with mcp_client(server, {"X-Mcp-Model-Name": gateway_id}) as session:
        await session.initialize()
        [tool] = (await session.list_tools()).tools  # the gateway's slug names the tool by default
        assert tool.name.startswith("invoke_")
        bad = await session.call_tool(tool.name, {"prompt": ""})
        assert bad.is_error and "prompt must be a non-empty string" in str(bad.content)
        with pytest.raises(MCPError, match="Unknown tool"):
            await session.call_tool("invoke_other", {"prompt": "Hi"})
    assert fake_llm.requests == []


async def test_another_account_cannot_reach_the_gateway(server: RunningServer, fake_llm: FakeLLM) -> None:
    assert server.app is not None
    gateway_id = await create_gateway(server, fake_llm)
    other = (await create_account(server.app[STORE], name="Other")).secret
    status, answer = await server.call("POST", PATH, key=other, headers={"X-Mcp-Model-Name": gateway_id},
                                       json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert status == 404, answer
    assert fake_llm.requests == []
