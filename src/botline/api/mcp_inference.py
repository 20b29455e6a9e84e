"""The gateway as an MCP tool: `/v1/mcp/inference` (seed: "A gateway can itself be exposed as an MCP tool").

Served by the official SDK's server side: its low-level `Server` with one tool, behind its
`StreamableHTTPSessionManager` in stateless mode (every POST stands alone: no `Mcp-Session-Id`, so any
replica answers any request), reached through `asgi_bridge`. aiohttp does what is botline's first:
the API key (auth middleware), the body's limits and JSON-RPC shape, the `X-Mcp-*` headers and the
gateway lookup in the key's account and scope; the SDK then does the protocol (initialize and
server/discover, protocol-version headers, ping, tools/list, tools/call, JSON-RPC errors, 202 for
notifications).

Answers: a client whose Accept names `text/event-stream` (the spec asks every client to) gets SSE
(keep-alive comments hold a long turn's answer open behind proxies); one that accepts only
`application/json` gets one JSON object. GET (a server-to-client stream) and DELETE (ending a
session) are 405: stateless, there is neither. The gateway is `X-Mcp-Model-Name` (an id or slug, as
/v1's `model`); its one tool is `invoke_{X-Mcp-Tool-Name or the gateway's slug}`, taking `prompt`;
`X-Mcp-User` is the external user id (memories, schedules, workers). docs/tools.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from aiohttp import web
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field

from botline.api.asgi_bridge import serve_asgi
from botline.api.errors import REQUEST_ID
from botline.api.http import ApiError, read_model
from botline.api.openai_compat import gateway_for, run_counted
from botline.api.openapi import documented
from botline.api.state import principal
from botline.domain.gateways import Gateway
from botline.domain.limits import LONG_TEXT_MAX, NAME_MAX, JsonObject, Name, OpenModel
from botline.gateway.caller import Caller, CallSource
from botline.gateway.errors import GatewayError
from botline.gateway.pipeline import TurnRequest
from botline.logs import request_id

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PATH = "/v1/mcp/inference"
SERVER_VERSION = "1"
"""`serverInfo.version`: this endpoint's own version (the tool shape), not the package's."""
TOOL_SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,57}$")
"""`invoke_` + this stays within the 64 characters tool names may have."""
PROMPT_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"prompt": {"type": "string", "description": "What to ask the assistant."}},
    "required": ["prompt"],
}
TARGET = "botline.mcp_target"
"""The ASGI scope key that carries what aiohttp resolved to the SDK's handlers."""
SSE = "text/event-stream"


class McpMessage(OpenModel):
    """One JSON-RPC 2.0 message of the Model Context Protocol (Streamable HTTP)."""

    jsonrpc: Name = Field(description='"2.0"')
    id: int | Name | None = None
    method: Name | None = None
    params: JsonObject | None = None


@dataclass(frozen=True)
class _Target:
    """The request as botline resolved it: the SDK's handlers answer for this gateway only."""

    request: web.Request
    gateway: Gateway
    tool: types.Tool
    user: str | None


def _target(ctx: ServerRequestContext[Any, Any]) -> _Target:
    target = ctx.request.scope.get(TARGET) if ctx.request is not None else None
    if not isinstance(target, _Target):  # only reachable if the SDK stopped passing the HTTP request on
        raise MCPError(INTERNAL_ERROR, "The request lost its gateway.")
    return target


async def _list_tools(ctx: ServerRequestContext[Any, Any],
                      params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_target(ctx).tool])


async def _call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    target = _target(ctx)
    request_id.set(target.request.get(REQUEST_ID))  # this runs in the SDK's task: the log lines name the request
    if params.name != target.tool.name:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name[:NAME_MAX]}")
    prompt = (params.arguments or {}).get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > LONG_TEXT_MAX:
        return _tool_error(f"prompt must be a non-empty string of at most {LONG_TEXT_MAX} characters.")
    key = principal(target.request).key
    caller = Caller(call_source=CallSource.MCP, account_id=principal(target.request).account.id,
                    external_user_id=target.user, key_id=key.id,
                    key_limits=None if key.scope is None else key.scope.limits)
    turn = TurnRequest(gateway=target.gateway, messages=[{"role": "user", "content": prompt}], caller=caller)
    try:
        result = await run_counted(target.request, turn, CallSource.MCP.channel)
    except GatewayError as exc:
        return _tool_error(exc.message)
    except Exception:  # the SDK would put the exception's text on the wire: log it, say only that it failed
        log.exception("the gateway %s failed as an MCP tool", target.gateway.id)
        return _tool_error("The assistant failed to answer. Try again later.")
    return types.CallToolResult(content=[types.TextContent(type="text", text=result.text)])


def _tool_error(text: str) -> types.CallToolResult:
    """A failed call the caller's model can read and correct (bad arguments, the gateway failing)."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class InferenceServer:
    """The SDK's server and its two stateless session managers (SSE and JSON answers), run by a task of
    their own: their task groups must be entered and left in one task, which aiohttp's startup and
    cleanup hooks are not."""

    def __init__(self, max_body_bytes: int) -> None:
        server: Server[Any] = Server("botline", version=SERVER_VERSION, on_list_tools=_list_tools,
                                     on_call_tool=_call_tool, get_tool_input_schema=lambda _name: PROMPT_SCHEMA)
        self.sse = StreamableHTTPSessionManager(server, stateless=True, json_response=False,
                                                max_request_body_size=max_body_bytes)
        self.json = StreamableHTTPSessionManager(server, stateless=True, json_response=True,
                                                 max_request_body_size=max_body_bytes)
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(ready), name="mcp-inference")
        await ready

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self.sse.run(), self.json.run():
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def close(self) -> None:
        """Ends the managers (a call still running is cancelled: aiohttp has drained requests by now)."""
        self._closing.set()
        if self._task is not None:
            await self._task


SERVER = web.AppKey("mcp_inference", InferenceServer)


def serving(max_body_bytes: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's cleanup context that runs the SDK's server for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        server = InferenceServer(max_body_bytes)
        await server.start()
        app[SERVER] = server
        yield
        await server.close()

    return context


def _tool(gateway: Gateway, request: web.Request) -> types.Tool:
    suffix = request.headers.get("X-Mcp-Tool-Name") or gateway.slug.replace("-", "_")
    if not TOOL_SUFFIX.match(suffix):
        raise ApiError(400, "Invalid value for X-Mcp-Tool-Name: must be 1 to 57 letters, digits, '_' or '-'.")
    return types.Tool(name=f"invoke_{suffix}", input_schema=PROMPT_SCHEMA,
                      description=f"Asks the assistant {gateway.name!r} and returns its answer.")


def _wants_sse(request: web.Request) -> bool:
    accepted = request.headers.get("Accept", "")[:1000].split(",")
    return any(item.split(";", 1)[0].strip().lower() == SSE for item in accepted)


@routes.post(PATH)
@documented(
    "The gateway named by X-Mcp-Model-Name as an MCP server (Streamable HTTP, stateless) with one tool, "
    "invoke_{X-Mcp-Tool-Name}, taking a prompt. The answer is an SSE stream (text/event-stream) when the "
    "Accept header names it, else one JSON-RPC object.", body=McpMessage, upstream=True,
)
async def mcp_inference(request: web.Request) -> web.StreamResponse:
    await read_model(request, McpMessage)  # the body's limits and shape, as every route reads its body
    model = request.headers.get("X-Mcp-Model-Name", "")
    if not model or len(model) > NAME_MAX:
        raise ApiError(400, "The X-Mcp-Model-Name header must name an AI gateway (its id or slug).")
    user = request.headers.get("X-Mcp-User") or None
    if user is not None and len(user) > NAME_MAX:
        raise ApiError(400, f"Invalid value for X-Mcp-User: at most {NAME_MAX} characters.")
    gateway = await gateway_for(request, model)
    target = _Target(request=request, gateway=gateway, tool=_tool(gateway, request), user=user)
    server = request.app[SERVER]
    manager = server.sse if _wants_sse(request) else server.json
    return await serve_asgi(manager.handle_request, request, await request.read(), extra={TARGET: target})


@routes.get(PATH)
@documented("Not offered: this stateless MCP server opens no server-to-client stream (405).", status=405,
            media_type=None)
async def mcp_stream(request: web.Request) -> web.Response:
    return web.Response(status=405, headers={"Allow": "POST"})


@routes.delete(PATH)
@documented("Not offered: this stateless MCP server has no session to end (405).", status=405, media_type=None)
async def mcp_end_session(request: web.Request) -> web.Response:
    return web.Response(status=405, headers={"Allow": "POST"})
