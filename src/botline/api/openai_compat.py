"""OpenAI-compatible inference: GET /v1/models and POST /v1/chat/completions (seed section Inference).

The gateway is applied (system instruction, tools and the tool loop, truncation, parameters) and
the answer has OpenAI's exact shape, streamed (`data: {chunk}` ... `data: [DONE]`) or not.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import Field

from botline.api.http import ApiError, json_response, read_model
from botline.api.openapi import documented
from botline.api.sse import SseStream, loop_pinger
from botline.api.state import principal, services
from botline.domain.accounts import ApiKey
from botline.domain.base import random_hex
from botline.domain.conversations import TokenUsage
from botline.domain.gateways import Gateway
from botline.domain.limits import MESSAGES_MAX, BodyBounded, Items, JsonObject, Name, OpenModel
from botline.gateway.caller import Caller, CallSource
from botline.gateway.errors import ContextTooLarge, GatewayError, NoModelConfigured
from botline.gateway.pipeline import ToolStatus, TurnRequest, TurnResult, TurnSink
from botline.gateway.reasoning import REASONING_FIELD, ReasoningPolicy
from botline.logs import bind_turn
from botline.metrics import Outcome

routes = web.RouteTableDef()

CHANNEL = CallSource.OPENAI_COMPATIBLE.channel
NO_PING = "no-ping"
DONE_FRAME = b"[DONE]"


@routes.get("/v1/models")
@documented("OpenAI model list: the account's AI gateways.")
async def list_models(request: web.Request) -> web.Response:
    caller = principal(request)
    account, scope = caller.account, caller.key.scope
    gateways = [g for g in await services(request).store.gateways.list_for_account(account.id)
                if scope is None or scope.allows_gateway(g.id)]
    return json_response({
        "object": "list",
        "data": [
            {"id": g.id, "object": "model", "created": int(g.created_at.timestamp()), "owned_by": account.name}
            for g in gateways
        ],
    })


async def gateway_for(request: web.Request, model: str) -> Gateway:
    """The caller's gateway by id or slug (404 naming the model otherwise)."""
    svc = services(request)
    store = svc.store
    account_id = principal(request).account.id
    gateway = await svc.gateways.find(account_id, model)
    if gateway is None:
        if not await store.gateways.list_for_account(account_id):
            raise ApiError(404, NoModelConfigured().message)
        raise ApiError(404, f"The model `{model}` does not exist: use an AI gateway id or slug from /v1/models.")
    scope = principal(request).key.scope
    if scope is not None and not scope.allows_gateway(gateway.id):
        raise ApiError(403, f"This API key may not use the AI gateway `{model}` (its scope names other gateways).")
    return gateway


ChatMessage = Annotated[dict[str, Any], BodyBounded("a message may carry an inline image; the upstream caps it")]


class ChatCompletionBody(OpenModel):
    """OpenAI's chat completion request. Fields not named here (temperature, max_tokens...) are passed
    to the upstream; the gateway's own parameters win where both are set."""

    model: Name = Field(min_length=1, description="An AI gateway id or slug (see GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MESSAGES_MAX)
    stream: bool | None = None
    stream_options: JsonObject | None = None
    tools: Items[JsonObject] | None = None
    user: Name | None = Field(default=None, description="The external user id: keys memories and schedules.")
    metadata: JsonObject | None = Field(default=None, description="Strings that reach protocol functions.")
    n: int | None = None


def _turn_request(gateway: Gateway, body: ChatCompletionBody, key: ApiKey) -> TurnRequest:
    if body.n not in (None, 1):
        raise ApiError(400, "Only n = 1 is supported.")
    caller = Caller(
        call_source=CallSource.OPENAI_COMPATIBLE, account_id=gateway.account_id,
        external_user_id=body.user or None,
        metadata={str(k): str(v) for k, v in (body.metadata or {}).items()},
        key_id=key.id, key_limits=None if key.scope is None else key.scope.limits,
    )
    return TurnRequest(
        gateway=gateway, messages=body.messages, caller=caller, client_tools=body.tools or None,
        client_parameters=dict(body.model_extra or {}), stream=bool(body.stream),
    )


def _usage(usage: TokenUsage) -> dict[str, Any]:
    reported: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                "total_tokens": usage.total_tokens}
    if usage.cached_tokens:
        reported["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return reported


KNOWLEDGE_FIELD = "knowledge_documents"
"""botline's extra field (docs/api.md): the knowledge documents the gateway put before the model."""


def _documents(result: TurnResult) -> dict[str, Any]:
    """{} when no document was used, so an answer without retrieval is exactly OpenAI's."""
    if not result.documents:
        return {}
    return {KNOWLEDGE_FIELD: [{"id": d.id, "name": d.name, "collectionId": d.collection_id,
                               "score": round(d.score, 6)} for d in result.documents]}


def _completion(result: TurnResult, completion_id: str, created: int, *, show_reasoning: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text if result.text or not (result.client_tool_calls or result.refusal) else None,
        "refusal": result.refusal or None,
        "annotations": [],
    }
    if result.client_tool_calls:
        message["tool_calls"] = result.client_tool_calls
    if result.reasoning and show_reasoning:
        message[REASONING_FIELD] = result.reasoning
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": result.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}],
        "usage": _usage(result.usage), **_documents(result),
    }


class ChunkWriter:
    """Turns pipeline progress into OpenAI `chat.completion.chunk` frames."""

    def __init__(self, stream: SseStream, completion_id: str, created: int, model: str, *,
                 show_reasoning: bool) -> None:
        self._stream = stream
        self._show_reasoning = show_reasoning
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
        """Streamed only when the gateway shows thinking (ThinkingProcess or ReturnReasoningTokens)."""
        if self._show_reasoning:
            await self._send({REASONING_FIELD: delta})

    async def tool(self, name: str, status: ToolStatus, explanation: str | None = None) -> None:
        """Server-side tools are invisible to OpenAI clients."""

    async def finish(self, result: TurnResult, include_usage: bool) -> None:
        if result.refusal:
            await self._send({"refusal": result.refusal})
        if result.client_tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(result.client_tool_calls)]
            await self._send({"tool_calls": calls})
        await self._send({}, result.finish_reason)
        if result.documents:  # its own frame with no choices, like the usage frame
            await self._stream.data(orjson.dumps({**self._head, "choices": [], **_documents(result)}))
        if include_usage:
            await self._stream.data(orjson.dumps({**self._head, "choices": [], "usage": _usage(result.usage)}))
        await self._stream.data(DONE_FRAME)

    async def fail(self, error: GatewayError) -> None:
        payload = {"error": {"message": error.message, "type": "server_error", "param": None, "code": None}}
        await self._stream.data(orjson.dumps(payload))


async def run_counted(request: web.Request, turn: TurnRequest, channel: str = CHANNEL,
                      sink: TurnSink | None = None) -> TurnResult:
    """The pipeline, counted in the turns metric of `channel`."""
    svc = services(request)
    try:
        result = await svc.pipeline.run(turn, sink)
    except ContextTooLarge:
        svc.metrics.turn(channel, Outcome.REFUSED)
        raise
    except (ConnectionResetError, asyncio.CancelledError):  # the client went away mid-answer
        svc.metrics.turn(channel, Outcome.CANCELLED)
        raise
    except Exception:  # the model failed (GatewayError), or storage or a bug: counted like the chat engine does
        svc.metrics.turn(channel, Outcome.FAILED)
        raise
    svc.metrics.turn(channel, Outcome.ANSWERED)
    return result


ROUTED_HEADER = "X-Model-Routed-Complexity"
"""AIVAX's header: the complexity (low, medium, high) that chose the model of a routed gateway."""


def _unless_input_blocked(result: TurnResult) -> TurnResult:
    """A message an AI policy blocked is a 400, as LiteLLM and Azure answer a filtered prompt (nothing
    reached the model); a blocked answer is a 200 whose content is the refusal, finish_reason
    "content_filter" (Azure's shape for a filtered completion)."""
    if result.blocked == "input":
        raise ApiError(400, result.text)
    return result


@routes.post("/v1/chat/completions")
@documented(
    "OpenAI chat completion through an AI gateway, streamed (SSE) or not.", body=ChatCompletionBody, upstream=True,
)
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_model(request, ChatCompletionBody)
    turn = _turn_request(await gateway_for(request, body.model), body, principal(request).key)
    bind_turn(CHANNEL, gateway=turn.gateway.id)
    completion_id, created = f"chatcmpl-{random_hex(16)}", int(time.time())
    show_reasoning = ReasoningPolicy.of(turn.gateway.parameters).shown
    if not turn.stream:
        result = _unless_input_blocked(await run_counted(request, turn))
        headers = {ROUTED_HEADER: result.complexity} if result.complexity else None
        return json_response(_completion(result, completion_id, created, show_reasoning=show_reasoning),
                             headers=headers)
    no_ping = request.headers.get("Sse-Stream-Options") == NO_PING
    stream = SseStream(request, open_streams=services(request).metrics.open_streams(CHANNEL),
                       pinger=None if no_ping else loop_pinger())
    writer = ChunkWriter(stream, completion_id, created, turn.gateway.parameters.model_name,
                         show_reasoning=show_reasoning)
    turn.on_route = lambda complexity: stream.response.headers.__setitem__(ROUTED_HEADER, complexity)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    try:
        try:
            result = await run_counted(request, turn, sink=writer)
            if not stream.opened:
                _unless_input_blocked(result)
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
