"""The gateway as an MCP tool: `/v1/mcp/inference` (seed: "A gateway can itself be exposed as an MCP tool").

Streamable HTTP, the subset a tool server needs, on aiohttp with the official SDK's types (the SDK's own
server is ASGI-only): POST one JSON-RPC message, answered with one JSON object (no SSE stream, no
session id: every request stands alone). Methods: `initialize` (handshake-era protocol versions),
`notifications/*` (202), `ping`, `tools/list` and `tools/call`. GET and DELETE are 405, as the spec
allows a server that offers no stream. The gateway is `X-Mcp-Model-Name` (an id or slug, as /v1's
`model`); its one tool is `invoke_{X-Mcp-Tool-Name or the gateway's slug}`, taking `prompt`; `X-Mcp-User`
is the external user id (memories, schedules, workers). docs/tools.md.
"""

from __future__ import annotations

import re
from typing import Any

import mcp_types as types
from aiohttp import web
from mcp_types.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import Field, ValidationError

from botline.api.http import ApiError, json_response, read_model
from botline.api.openai_compat import gateway_for, run_counted
from botline.api.openapi import documented
from botline.api.state import principal
from botline.domain.gateways import Gateway
from botline.domain.limits import LONG_TEXT_MAX, NAME_MAX, JsonObject, Name, OpenModel
from botline.gateway.caller import Caller, CallSource
from botline.gateway.errors import GatewayError
from botline.gateway.pipeline import TurnRequest

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


class McpMessage(OpenModel):
    """One JSON-RPC 2.0 message of the Model Context Protocol (Streamable HTTP)."""

    jsonrpc: Name = Field(description='"2.0"')
    id: int | Name | None = None
    method: Name | None = None
    params: JsonObject | None = None


def _tool(gateway: Gateway, request: web.Request) -> types.Tool:
    suffix = request.headers.get("X-Mcp-Tool-Name") or gateway.slug.replace("-", "_")
    if not TOOL_SUFFIX.match(suffix):
        raise ApiError(400, "Invalid value for X-Mcp-Tool-Name: must be 1 to 57 letters, digits, '_' or '-'.")
    return types.Tool(name=f"invoke_{suffix}", input_schema=PROMPT_SCHEMA,
                      description=f"Asks the assistant {gateway.name!r} and returns its answer.")


def _reply(request_id: types.RequestId, result: types.Result) -> web.Response:
    message = types.JSONRPCResponse(jsonrpc="2.0", id=request_id,
                                    result=result.model_dump(by_alias=True, mode="json", exclude_none=True))
    return json_response(message.model_dump(by_alias=True, mode="json", exclude_none=True))


def _error(request_id: types.RequestId | None, code: int, message: str, status: int = 200) -> web.Response:
    error = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
    return json_response(error.model_dump(by_alias=True, mode="json", exclude_none=True), status=status)


@routes.post(PATH)
@documented(
    "The gateway named by X-Mcp-Model-Name as an MCP server (Streamable HTTP, JSON answers) with one tool, "
    "invoke_{X-Mcp-Tool-Name}, taking a prompt.", body=McpMessage, upstream=True,
)
async def mcp_inference(request: web.Request) -> web.Response:
    data = (await read_model(request, McpMessage)).model_dump(exclude_unset=True)
    model = request.headers.get("X-Mcp-Model-Name", "")
    if not model or len(model) > NAME_MAX:
        raise ApiError(400, "The X-Mcp-Model-Name header must name an AI gateway (its id or slug).")
    user = request.headers.get("X-Mcp-User") or None
    if user is not None and len(user) > NAME_MAX:
        raise ApiError(400, f"Invalid value for X-Mcp-User: at most {NAME_MAX} characters.")
    message = _parse(data)
    if message is None:
        return _error(None, INVALID_REQUEST, "The body must be one JSON-RPC 2.0 message.", status=400)
    if not isinstance(message, types.JSONRPCRequest):
        return web.Response(status=202)  # notifications and responses need no answer
    gateway = await gateway_for(request, model)
    tool = _tool(gateway, request)
    params = message.params or {}
    match message.method:
        case "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
            return _reply(message.id, types.InitializeResult(
                protocol_version=version, capabilities=types.ServerCapabilities(tools=types.ToolsCapability()),
                server_info=types.Implementation(name="botline", version=SERVER_VERSION)))
        case "ping":
            return _reply(message.id, types.EmptyResult())
        case "tools/list":
            return _reply(message.id, types.ListToolsResult(tools=[tool]))
        case "tools/call":
            return await _call(request, message, gateway, tool.name, user)
    return _error(message.id, METHOD_NOT_FOUND, f"Method not found: {message.method}")


def _parse(data: dict[str, Any]) -> types.JSONRPCMessage | None:
    shapes: tuple[type[types.JSONRPCMessage], ...] = (
        types.JSONRPCRequest, types.JSONRPCNotification, types.JSONRPCResponse, types.JSONRPCError)
    for shape in shapes:
        try:
            return shape.model_validate(data)
        except ValidationError:
            continue
    return None


async def _call(request: web.Request, message: types.JSONRPCRequest, gateway: Gateway, tool_name: str,
                user: str | None) -> web.Response:
    try:
        params = types.CallToolRequestParams.model_validate(message.params or {})
    except ValidationError:
        return _error(message.id, INVALID_REQUEST, "tools/call takes {name, arguments}.")
    prompt = (params.arguments or {}).get("prompt")
    if params.name != tool_name:
        return _error(message.id, INVALID_PARAMS, f"Unknown tool: {params.name}")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > LONG_TEXT_MAX:
        return _tool_error(message.id, f"prompt must be a non-empty string of at most {LONG_TEXT_MAX} characters.")
    key = principal(request).key
    caller = Caller(call_source=CallSource.MCP, account_id=principal(request).account.id, external_user_id=user,
                    key_id=key.id, key_limits=None if key.scope is None else key.scope.limits)
    turn = TurnRequest(gateway=gateway, messages=[{"role": "user", "content": prompt}], caller=caller)
    try:
        result = await run_counted(request, turn, CallSource.MCP.channel)
    except GatewayError as exc:
        return _tool_error(message.id, exc.message)
    return _reply(message.id, types.CallToolResult(content=[types.TextContent(type="text", text=result.text)]))


def _tool_error(request_id: types.RequestId, text: str) -> web.Response:
    """A failed call the caller's model can read and correct (bad arguments, the gateway failing)."""
    return _reply(request_id, types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True))


@routes.get(PATH)
@documented("Not offered: this MCP server opens no server-to-client stream (405).", status=405, media_type=None)
async def mcp_stream(request: web.Request) -> web.Response:
    return web.Response(status=405, headers={"Allow": "POST"})
