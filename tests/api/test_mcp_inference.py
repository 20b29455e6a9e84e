"""The gateway as an MCP tool (/v1/mcp/inference), proven with the official SDK's client over Streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

PATH = "/v1/mcp/inference"


@asynccontextmanager
async def mcp_session(server: RunningServer, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={**server.headers(), **headers}) as http,
        streamable_http_client(server.url + PATH, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_the_sdk_client_lists_and_calls_the_gateway(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, systemInstruction="You are the support desk.")
    fake_llm.script(Reply(text="Your order ships tomorrow."))
    headers = {"X-Mcp-Model-Name": gateway_id, "X-Mcp-Tool-Name": "support", "X-Mcp-User": "agent-7"}
    async with mcp_session(server, headers) as session:
        listed = await session.list_tools()
        [tool] = listed.tools
        assert tool.name == "invoke_support" and tool.input_schema["required"] == ["prompt"]
        result = await session.call_tool("invoke_support", {"prompt": "Where is my order?"})
    assert not result.is_error
    assert [block.text for block in result.content if isinstance(block, types.TextContent)] == [
        "Your order ships tomorrow."]
    [request] = fake_llm.requests
    messages = request.body["messages"]
    assert messages[0]["role"] == "system" and "You are the support desk." in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Where is my order?"}
    assert request.body["user"] == "agent-7"


async def test_errors_are_clear(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, answer = await server.call("POST", PATH, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert status == 400 and "X-Mcp-Model-Name" in answer["message"]
    status, answer = await server.call("POST", PATH, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                       headers={"X-Mcp-Model-Name": "nope"})
    assert status == 404 and "nope" in answer["message"]
    status, _ = await server.call("POST", PATH, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                  headers={"X-Mcp-Model-Name": gateway_id}, key="sk-wrong")
    assert status == 401
    async with mcp_session(server, {"X-Mcp-Model-Name": gateway_id}) as session:
        [tool] = (await session.list_tools()).tools  # the gateway's slug names the tool by default
        assert tool.name.startswith("invoke_")
        bad = await session.call_tool(tool.name, {"prompt": ""})
        assert bad.is_error and "prompt must be a non-empty string" in str(bad.content)
        with pytest.raises(MCPError, match="Unknown tool"):
            await session.call_tool("invoke_other", {"prompt": "Hi"})
    assert fake_llm.requests == []
