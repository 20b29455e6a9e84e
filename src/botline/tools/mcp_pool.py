"""MCP sessions to the tenants' MCP servers (Streamable HTTP, the official `mcp` SDK), kept open for
reuse, and their tool listings cached per source.

Every connection goes through the egress layer: the SDK's httpx2 client gets `EgressTransport`, so
(1) the URL of every request, redirect hops included (the SDK follows same-origin redirects only), is
checked by `Egress.check_destination` (http(s) only; for tenants an IP literal the policy refuses is
refused), (2) a host name is resolved by the tenant pool's `GuardedResolver`, which drops refused
addresses, and aiohttp connects only to what it returned (no DNS-rebinding gap), and (3) each response
body, an SSE stream included, is capped at `tools.mcp_response_max_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from botline.config import ToolsSettings
from botline.egress import Egress, Trust
from botline.egress.sdk_transport import EgressTransport

log = logging.getLogger(__name__)

SourceKey = tuple[str, tuple[tuple[str, str], ...], Trust]


class McpUnavailable(Exception):
    """The MCP server could not be reached, answered badly, or took too long."""


class McpConnection:
    """One MCP session, held open by a task of its own (the SDK's contexts must be entered and left in
    one task); other tasks send requests through it."""

    def __init__(self, url: str, headers: Mapping[str, str], client: Callable[[], httpx2.AsyncClient]) -> None:
        self._url = url
        self._headers = dict(headers)
        self._client = client
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._lock = asyncio.Lock()
        self.used_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return self._task is None or not self._task.done()

    async def session(self) -> ClientSession:
        async with self._lock:
            if self._session is not None:
                return self._session
            ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._hold(ready), name=f"mcp-session {id(self)}")
            return await ready

    async def _hold(self, ready: asyncio.Future[ClientSession]) -> None:
        try:
            async with (
                self._client() as http,
                streamable_http_client(self._url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                self._session = session
                ready.set_result(session)
                await self._closing.wait()
        except BaseException as exc:  # the SDK raises ExceptionGroups and anyio errors; the caller gets one kind
            if not ready.done():
                ready.set_exception(McpUnavailable(type(exc).__name__))
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("MCP session ended: %s", type(exc).__name__)
        finally:
            self._session = None

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(2):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


@dataclass
class _Listing:
    tools: list[types.Tool]
    fetched_at: float


class McpPool:
    """Open sessions by (url, headers, trust), LRU-bounded and closed when idle; tool listings cached."""

    def __init__(self, egress: Egress, settings: ToolsSettings, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._egress = egress
        self._settings = settings
        self._clock = clock
        self._connections: OrderedDict[SourceKey, McpConnection] = OrderedDict()
        self._listings: OrderedDict[SourceKey, _Listing] = OrderedDict()

    def _http_client(self, trust: Trust, headers: Mapping[str, str]) -> Callable[[], httpx2.AsyncClient]:
        transport = EgressTransport(self._egress, trust, max_response_bytes=self._settings.mcp_response_max_bytes)
        return lambda: httpx2.AsyncClient(transport=transport, headers=dict(headers))

    async def _connection(self, key: SourceKey) -> McpConnection:
        await self._sweep()
        connection = self._connections.get(key)
        if connection is None or not connection.alive:
            url, headers, trust = key
            connection = McpConnection(url, dict(headers), self._http_client(trust, dict(headers)))
            self._connections[key] = connection
        self._connections.move_to_end(key)
        connection.used_at = self._clock()
        while len(self._connections) > self._settings.mcp_max_connections:
            _, oldest = self._connections.popitem(last=False)
            await oldest.close()
        return connection

    async def _sweep(self) -> None:
        now = self._clock()
        for key, connection in list(self._connections.items()):
            if not connection.alive or now - connection.used_at > self._settings.mcp_idle_seconds:
                del self._connections[key]
                await connection.close()

    async def _drop(self, key: SourceKey) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            await connection.close()

    async def tools(self, url: str, headers: Mapping[str, str], trust: Trust, *, ttl: float) -> list[types.Tool]:
        """The server's tools (at most mcp_max_tools_per_source), from cache while younger than `ttl`."""
        key: SourceKey = (url, tuple(sorted(headers.items())), trust)
        cached = self._listings.get(key)
        if cached is not None and self._clock() - cached.fetched_at < ttl:
            self._listings.move_to_end(key)
            return cached.tools
        try:
            async with asyncio.timeout(self._settings.mcp_list_timeout_seconds):
                session = await (await self._connection(key)).session()
                listed = (await session.list_tools()).tools[: self._settings.mcp_max_tools_per_source]
        except Exception as exc:  # the SDK fails in many ways (anyio, httpx2, MCPError): all mean unavailable
            await self._drop(key)
            raise McpUnavailable(type(exc).__name__) from exc
        self._listings[key] = _Listing(listed, self._clock())
        while len(self._listings) > self._settings.mcp_max_connections * 4:
            self._listings.popitem(last=False)
        return listed

    async def call(self, url: str, headers: Mapping[str, str], trust: Trust, name: str, arguments: dict[str, Any],
                   meta: dict[str, Any]) -> types.CallToolResult:
        key: SourceKey = (url, tuple(sorted(headers.items())), trust)
        timeout = self._settings.mcp_call_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                session = await (await self._connection(key)).session()
                result: types.CallToolResult = await session.call_tool(
                    name, arguments, read_timeout_seconds=timeout, meta=cast(types.RequestParamsMeta, meta))
                return result
        except Exception as exc:  # the SDK fails in many ways (anyio, httpx2, MCPError): all mean unavailable
            if not isinstance(exc, McpUnavailable | TimeoutError):
                log.info("MCP call %s failed: %s", name, type(exc).__name__)
            await self._drop(key)
            raise McpUnavailable("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__) from exc

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), OrderedDict()
        for connection in connections:
            await connection.close()
