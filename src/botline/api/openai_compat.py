"""OpenAI-compatible inference: GET /v1/models and POST /v1/chat/completions (seed section Inference).

The gateway is applied (system instruction, tools and the tool loop, truncation, parameters) and
the answer has OpenAI's exact shape, streamed (`data: {chunk}` ... `data: [DONE]`) or not.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from botline.api.http import ApiError, json_response, read_json
from botline.api.sse import SseStream, loop_pinger
from botline.api.state import principal, services
from botline.domain.base import random_hex
from botline.domain.conversations import TokenUsage
from botline.domain.gateways import Gateway
from botline.gateway.caller import Caller, CallSource
from botline.gateway.errors import GatewayError, NoModelConfigured
from botline.gateway.pipeline import ToolStatus, TurnRequest, TurnResult

routes = web.RouteTableDef()

HANDLED_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "tools", "user", "metadata", "n"})
NO_PING = "no-ping"
DONE_FRAME = b"[DONE]"


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    account = principal(request).account
    gateways = await services(request).store.gateways.list_for_account(account.id)
    return json_response({
        "object": "list",
        "data": [
            {"id": g.id, "object": "model", "created": int(g.created_at.timestamp()), "owned_by": account.name}
            for g in gateways
        ],
    })


async def _gateway(request: web.Request, model: str) -> Gateway:
    svc = services(request)
    store = svc.store
    account_id = principal(request).account.id
    gateway = await svc.gateways.find(account_id, model)
    if gateway is None:
        if not await store.gateways.list_for_account(account_id):
            raise ApiError(404, NoModelConfigured().message)
        raise ApiError(404, f"The model `{model}` does not exist: use an AI gateway id or slug from /v1/models.")
    return gateway


def _turn_request(gateway: Gateway, body: dict[str, Any]) -> TurnRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "messages must be a non-empty array of message objects.")
    if body.get("n", 1) != 1:
        raise ApiError(400, "Only n = 1 is supported.")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ApiError(400, "tools must be an array.")
    user = body.get("user")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ApiError(400, "metadata must be an object of strings.")
    caller = Caller(
        call_source=CallSource.OPENAI_COMPATIBLE, account_id=gateway.account_id,
        external_user_id=str(user) if user else None,
        metadata={str(k): str(v) for k, v in metadata.items()},
    )
    return TurnRequest(
        gateway=gateway, messages=messages, caller=caller, client_tools=tools or None,
        client_parameters={k: v for k, v in body.items() if k not in HANDLED_FIELDS},
        stream=bool(body.get("stream")),
    )


def _usage(usage: TokenUsage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _completion(result: TurnResult, completion_id: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text if result.text or not result.client_tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if result.client_tool_calls:
        message["tool_calls"] = result.client_tool_calls
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": result.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}],
        "usage": _usage(result.usage),
    }


class ChunkWriter:
    """Turns pipeline progress into OpenAI `chat.completion.chunk` frames."""

    def __init__(self, stream: SseStream, completion_id: str, created: int, model: str) -> None:
        self._stream = stream
        self._head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._started = False

    async def _send(self, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        if not self._started:
            self._started = True
            await self._chunk({"role": "assistant", "content": ""}, None)
        await self._chunk(delta, finish_reason)

    async def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await self._stream.data(orjson.dumps({**self._head, "choices": [choice]}))

    async def text(self, delta: str) -> None:
        await self._send({"content": delta})

    async def reasoning(self, delta: str) -> None:
        await self._send({"reasoning_content": delta})

    async def tool(self, name: str, status: ToolStatus) -> None:
        """Server-side tools are invisible to OpenAI clients."""

    async def finish(self, result: TurnResult, include_usage: bool) -> None:
        if result.client_tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(result.client_tool_calls)]
            await self._send({"tool_calls": calls})
        await self._send({}, result.finish_reason)
        if include_usage:
            await self._stream.data(orjson.dumps({**self._head, "choices": [], "usage": _usage(result.usage)}))
        await self._stream.data(DONE_FRAME)

    async def fail(self, error: GatewayError) -> None:
        payload = {"error": {"message": error.message, "type": "server_error", "param": None, "code": None}}
        await self._stream.data(orjson.dumps(payload))


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: an AI gateway id or slug.")
    turn = _turn_request(await _gateway(request, model), body)
    pipeline = services(request).pipeline
    completion_id, created = f"chatcmpl-{random_hex(16)}", int(time.time())
    if not turn.stream:
        return json_response(_completion(await pipeline.run(turn), completion_id, created))
    no_ping = request.headers.get("Sse-Stream-Options") == NO_PING
    stream = SseStream(request, pinger=None if no_ping else loop_pinger())
    writer = ChunkWriter(stream, completion_id, created, turn.gateway.parameters.model_name)
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    try:
        try:
            result = await pipeline.run(turn, writer)
        except GatewayError as exc:
            if not stream.opened:
                raise
            await writer.fail(exc)
        else:
            await writer.finish(result, include_usage=include_usage)
    except ConnectionResetError:
        pass  # the client went away; the upstream request was closed with the pipeline
    finally:
        await stream.close()
    return stream.response
