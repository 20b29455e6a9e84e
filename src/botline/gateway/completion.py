"""One model round through the openai SDK, streamed or not, normalised to a `Round`.

We call the SDK's own `client.post("/chat/completions", ...)` with our already-shaped body, encoded
by orjson (the SDK sends bytes as they are), and read
the raw response with orjson. The SDK still authenticates, retries with backoff and maps errors to
its typed exceptions; what we skip is its per-request walk of the body against its TypedDicts
(`maybe_transform`, a third of a request's CPU in the profile) and building pydantic objects for
every chunk. The body we send is plain JSON already.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import openai
import orjson

from botline.domain.conversations import TokenUsage
from botline.gateway.errors import UpstreamError
from botline.gateway.llm import raise_upstream

SSE_DATA = "data:"
SSE_DONE = "[DONE]"
CHAT_COMPLETIONS = "/chat/completions"
REQUEST_OPTIONS: Any = {"security": {"bearer_auth": True}}
"""What the SDK's own chat.completions.create passes: authenticate with the client's API key."""
STREAMING: bool = True
"""Typed as bool so mypy picks the post() overload that hands back the raw, unread response."""


class DeltaSink(Protocol):
    async def text(self, delta: str) -> None: ...

    async def reasoning(self, delta: str) -> None: ...


@dataclass
class Round:
    """What the model answered in one call."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: TokenUsage | None = None
    model: str = ""
    first_delta_at: float | None = None
    """`time.perf_counter()` at the first text or reasoning delta of a streamed call."""
    refusal: str = ""
    """The model's refusal message (OpenAI structured outputs answer one instead of content)."""


def _usage(data: Any) -> TokenUsage | None:
    if not isinstance(data, dict):
        return None
    return TokenUsage(
        prompt_tokens=int(data.get("prompt_tokens") or 0), completion_tokens=int(data.get("completion_tokens") or 0)
    )


def _reasoning_of(holder: dict[str, Any]) -> str:
    value = holder.get("reasoning_content") or holder.get("reasoning")
    return value if isinstance(value, str) else ""


def _upstream_failure(payload: dict[str, Any]) -> UpstreamError:
    error = payload.get("error")
    message = error.get("message") if isinstance(error, dict) else str(error)
    return UpstreamError(f"The AI model failed: {message}")


async def complete(client: openai.AsyncOpenAI, request: dict[str, Any]) -> Round:
    """A non-streaming call."""
    try:
        raw = await client.post(
            CHAT_COMPLETIONS, content=orjson.dumps(request), cast_to=httpx2.Response, options=REQUEST_OPTIONS
        )
        payload = orjson.loads(raw.content)
    except openai.OpenAIError as exc:
        raise_upstream(exc)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The AI model answered with something that is not JSON.") from exc
    if "error" in payload and not payload.get("choices"):
        raise _upstream_failure(payload)
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return Round(
        content=message.get("content") or "",
        reasoning=_reasoning_of(message),
        tool_calls=list(message.get("tool_calls") or []),
        finish_reason=choices[0].get("finish_reason") or "stop",
        usage=_usage(payload.get("usage")),
        model=str(payload.get("model") or request["model"]),
        refusal=message.get("refusal") or "",
    )


async def stream(client: openai.AsyncOpenAI, request: dict[str, Any], sink: DeltaSink) -> Round:
    """A streaming call: text and reasoning deltas go to `sink` as they arrive.

    Cancelling the awaiting task closes the upstream response, so the provider stops generating.
    """
    result = Round(model=str(request["model"]))
    calls: dict[int, dict[str, Any]] = {}
    content: list[str] = []
    reasoning: list[str] = []
    body = orjson.dumps({**request, "stream": True, "stream_options": {"include_usage": True}})
    try:
        response = await client.post(
            CHAT_COMPLETIONS, content=body, cast_to=httpx2.Response, options=REQUEST_OPTIONS, stream=STREAMING
        )
        try:
            async for line in response.aiter_lines():
                if not line.startswith(SSE_DATA):
                    continue
                data = line[len(SSE_DATA):].strip()
                if data == SSE_DONE:
                    break
                chunk = orjson.loads(data)
                if "error" in chunk and not chunk.get("choices"):
                    raise _upstream_failure(chunk)
                result.model = str(chunk.get("model") or result.model)
                if chunk.get("usage"):
                    result.usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if text := delta.get("content"):
                        result.first_delta_at = result.first_delta_at or time.perf_counter()
                        content.append(text)
                        await sink.text(text)
                    if refused := delta.get("refusal"):
                        result.refusal += refused
                    if thought := _reasoning_of(delta):
                        result.first_delta_at = result.first_delta_at or time.perf_counter()
                        reasoning.append(thought)
                        await sink.reasoning(thought)
                    for call_delta in delta.get("tool_calls") or ():
                        _merge_tool_call(calls, call_delta)
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
        finally:
            await response.aclose()  # also what stops the upstream when this task is cancelled
    except openai.OpenAIError as exc:
        raise_upstream(exc)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The AI model streamed something that is not JSON.") from exc
    except httpx2.HTTPError as exc:  # the connection broke mid-stream, after the SDK handed the body over
        raise UpstreamError("The AI model's answer was cut off.") from exc
    result.content = "".join(content)
    result.reasoning = "".join(reasoning)
    result.tool_calls = [calls[i] for i in sorted(calls)]
    return result


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    call = calls.setdefault(
        int(delta.get("index") or 0), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]
