"""The model call through the openai SDK (`SdkModelClient`), streamed or not.

We call the SDK's own `client.post("/chat/completions", ...)` with our already-shaped body, encoded
by orjson (the SDK sends bytes as they are), and read the raw response with orjson into a Round
(gateway/rounds.py). The SDK authenticates, retries with backoff and maps errors to its typed
exceptions (mapped to ours by `raise_upstream`); what we skip is its per-request walk of the body
against its TypedDicts and building pydantic objects for every chunk.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson

from botline.gateway.errors import UpstreamError
from botline.gateway.model_client import ModelClient
from botline.gateway.reasoning import ALL_KINDS, ReasoningKinds
from botline.gateway.rounds import DeltaSink, Round, StreamAssembler, round_of
from botline.gateway.upstream import cut_off, raise_upstream, too_large_in, unreachable

SSE_DATA = "data:"
SSE_DONE = "[DONE]"
CHAT_COMPLETIONS = "/chat/completions"
REQUEST_OPTIONS: Any = {"security": {"bearer_auth": True}}
"""What the SDK's own chat.completions.create passes: authenticate with the client's API key."""
STREAMING: bool = True
"""Typed as bool so mypy picks the post() overload that hands back the raw, unread response."""
STREAM_OPTIONS = {"stream": True, "stream_options": {"include_usage": True}}


class SdkModelClient(ModelClient):
    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client

    async def complete(self, request: dict[str, Any], kinds: ReasoningKinds = ALL_KINDS) -> Round:
        return await complete(self._client, request, kinds)

    async def stream(self, request: dict[str, Any], sink: DeltaSink, kinds: ReasoningKinds = ALL_KINDS) -> Round:
        return await stream(self._client, request, sink, kinds)


async def complete(client: openai.AsyncOpenAI, request: dict[str, Any], kinds: ReasoningKinds = ALL_KINDS) -> Round:
    """A non-streaming call (also /validate's, with the client's retries off)."""
    try:
        raw = await client.post(
            CHAT_COMPLETIONS, content=orjson.dumps(request), cast_to=httpx2.Response, options=REQUEST_OPTIONS
        )
        payload = orjson.loads(raw.content)
    except openai.OpenAIError as exc:
        raise_upstream(exc)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The AI model answered with something that is not JSON.") from exc
    return round_of(payload, str(request["model"]), kinds)


async def stream(
    client: openai.AsyncOpenAI, request: dict[str, Any], sink: DeltaSink, kinds: ReasoningKinds = ALL_KINDS
) -> Round:
    assembler = StreamAssembler(str(request["model"]), kinds)
    try:
        response = await client.post(
            CHAT_COMPLETIONS, content=orjson.dumps({**request, **STREAM_OPTIONS}), cast_to=httpx2.Response,
            options=REQUEST_OPTIONS, stream=STREAMING,
        )
        try:
            async for line in response.aiter_lines():
                if not line.startswith(SSE_DATA):
                    continue
                data = line[len(SSE_DATA):].strip()
                if data == SSE_DONE:
                    break
                assembler.feed(orjson.loads(data))
                await assembler.flush(sink)
        finally:
            await response.aclose()  # also what stops the upstream when this task is cancelled
    except openai.OpenAIError as exc:
        raise_upstream(exc)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The AI model streamed something that is not JSON.") from exc
    except httpx2.HTTPError as exc:  # the connection broke mid-stream, after the SDK handed the body over
        raise (unreachable(exc) if too_large_in(exc) else cut_off()) from exc
    return assembler.result()
