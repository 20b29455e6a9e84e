"""The MCP pool against a real MCP server: one session reused for many calls, listings cached until
their time is up, and a server that goes away fails only the request in flight."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from botline.config import ToolsSettings
from botline.egress import Egress, EgressPolicy, Trust
from botline.tools.mcp_pool import McpPool, McpUnavailable
from tests.support.egress import LOOPBACK_ALLOWED
from tests.tools.mcp_server import McpTestServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def mcp_server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as server:
        yield server


@pytest.fixture
async def egress() -> AsyncIterator[Egress]:
    async with Egress(EgressPolicy(LOOPBACK_ALLOWED)) as opened:
        yield opened


async def test_one_session_serves_many_calls_and_listings_are_cached(mcp_server: McpTestServer,
                                                                     egress: Egress) -> None:
    clock = Clock()
    pool = McpPool(egress, ToolsSettings(), clock=clock)
    try:
        listed = await pool.tools(mcp_server.url, {}, Trust.TENANT, ttl=60)
        assert {tool.name for tool in listed} == {"add", "slow", "broken", "picture", "odd_pictures", "voice", "flood"}
        for a in range(3):
            result = await pool.call(mcp_server.url, {}, Trust.TENANT, "add", {"a": a, "b": 1}, {"k": "v"})
            assert result.content[0].text == str(a + 1)  # type: ignore[union-attr]
        await pool.tools(mcp_server.url, {}, Trust.TENANT, ttl=60)
        assert mcp_server.methods.count("initialize") == 1
        assert mcp_server.methods.count("tools/list") == 1
        clock.now += 61
        await pool.tools(mcp_server.url, {}, Trust.TENANT, ttl=60)
        assert mcp_server.methods.count("tools/list") == 2
    finally:
        await pool.close()


async def test_a_refused_destination_is_never_contacted(egress: Egress) -> None:
    strict = Egress(EgressPolicy([]))
    await strict.start()
    pool = McpPool(strict, ToolsSettings())
    try:
        async with McpTestServer() as server:
            with pytest.raises(McpUnavailable):
                await pool.tools(server.url, {}, Trust.TENANT, ttl=60)
            assert server.methods == []
            for url in (server.url.replace("127.0.0.1", "localhost"), "http://169.254.169.254/mcp"):
                with pytest.raises(McpUnavailable):
                    await pool.tools(url, {}, Trust.TENANT, ttl=60)
            assert server.methods == []
    finally:
        await pool.close()
        await strict.close()


async def test_a_stopped_server_fails_the_call_and_a_new_one_is_reached_again(egress: Egress) -> None:
    pool = McpPool(egress, ToolsSettings(mcp_call_timeout_seconds=2))
    try:
        server = McpTestServer()
        await server.__aenter__()
        await pool.tools(server.url, {}, Trust.TENANT, ttl=60)
        await server.stop()
        with pytest.raises(McpUnavailable):
            await pool.call(server.url, {}, Trust.TENANT, "add", {"a": 1, "b": 1}, {})
    finally:
        await pool.close()
