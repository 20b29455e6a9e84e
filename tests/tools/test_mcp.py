"""MCP sources in real turns: the fake model calls an MCP tool, the MCP server (the SDK's own) gets the
arguments and `_meta`, and a dead, slow or failing server costs only that tool call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import pytest

from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.memory.helpers import admin_id, new_session, offered, say, store_of, tool_results
from tests.support.server import RunningServer, free_port
from tests.support.webchat import create_client
from tests.tools.mcp_server import McpTestServer

CALL_TIMEOUT = 0.5


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"tools": {"mcp_call_timeout_seconds": CALL_TIMEOUT, "mcp_list_timeout_seconds": 2,
                      "tool_output_max_chars": 1000}}


@pytest.fixture
async def mcp_server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as server:
        yield server


async def chat(server: RunningServer, fake: FakeLLM, *sources: dict[str, Any]) -> str:
    client = await create_client(server, fake, gateway={"mcpSources": list(sources)})
    return await new_session(server, client, "user-1")


def source(url: str, name: str = "calc") -> dict[str, Any]:
    return {"name": name, "url": url, "cacheDuration": 600}


async def test_the_model_calls_an_mcp_tool_with_arguments_and_meta(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__add", {"a": 2, "b": 3})]), Reply(text="It is 5."))
    await say(server, key, "2+3?")
    assert {"calc__add", "calc__slow", "calc__broken", "calc__picture"} <= offered(fake_llm.requests[0])
    assert tool_results(fake_llm.requests[-1]) == ["5"]
    [call] = mcp_server.calls
    assert call.arguments == {"a": 2, "b": 3}
    meta = call.meta
    assert meta["_aiv_external_user_id"] == "user-1" and meta["_aiv_call_source"] == "WebChatClient"
    assert meta["_aiv_conversation_token"] and meta["_aiv_moment"].endswith("+00:00")
    account = await store_of(server).accounts.get(await admin_id(server))
    assert account is not None
    assert bcrypt.checkpw(account.salt.encode(), meta["_aiv_nonce"].encode())


async def test_two_servers_tools_do_not_collide(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    async with McpTestServer() as other:
        key = await chat(server, fake_llm, source(mcp_server.url, "one"), source(other.url, "two"))
        fake_llm.script(Reply(tool_calls=[ToolCall("two__add", {"a": 1, "b": 1})]), Reply(text="2"))
        await say(server, key, "1+1")
        assert {"one__add", "two__add"} <= offered(fake_llm.requests[0])
        assert [c.tool for c in other.calls] == ["add"] and mcp_server.calls == []


async def test_a_dead_server_is_left_out_and_the_turn_answers(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm, source(f"http://127.0.0.1:{free_port()}/mcp"))
    fake_llm.script(Reply(text="Hello."))
    await say(server, key, "Hi")
    assert not any(name.startswith("calc__") for name in offered(fake_llm.requests[-1]))


async def test_a_server_gone_after_listing_gives_a_tool_error(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    await say(server, key, "Hi")  # lists (and caches) the tools
    await mcp_server.stop()
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__add", {"a": 1, "b": 2})]), Reply(text="Sorry."))
    await say(server, key, "1+2?")
    [result] = tool_results(fake_llm.requests[-1])
    assert "calc__add is unavailable right now" in result


async def test_a_slow_tool_times_out_and_the_turn_goes_on(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__slow", {})]), Reply(text="It was slow."))
    started = time.monotonic()
    await say(server, key, "Go")
    assert time.monotonic() - started < CALL_TIMEOUT + 2
    assert "unavailable right now (timed out)" in tool_results(fake_llm.requests[-1])[0]
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__add", {"a": 1, "b": 1})]), Reply(text="2"))
    await say(server, key, "1+1")  # the source works again for the next call
    assert tool_results(fake_llm.requests[-1])[-1] == "2"


async def test_errors_other_blocks_and_long_output_are_bounded_text(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__broken", {}), ToolCall("calc__picture", {}),
                                      ToolCall("calc__flood", {"size": 5000})]), Reply(text="Done."))
    await say(server, key, "Try them")
    broken, picture, flood = tool_results(fake_llm.requests[-1])
    assert broken.startswith("The tool reported an error:") and "on fire" in broken
    assert picture == "A cat.\n[the tool returned image/png image content, which is not shown here]"
    assert len(flood) < 1100 and flood.endswith("[cut: the tool's output passed 1000 characters]")
