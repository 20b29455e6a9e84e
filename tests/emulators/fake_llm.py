"""A faithful fake of an OpenAI-compatible LLM server, for tests and benchmarks.

:class:`FakeLLM` is a real aiohttp server bound to a local port. It speaks
OpenAI's wire format exactly (chat completions, streamed or not, tool calls,
usage, error bodies, ``Retry-After``), so code under test can reach it through
the unmodified ``openai`` SDK by pointing ``base_url`` at :attr:`FakeLLM.base_url`.

Answers are scripted with :class:`Reply` objects consumed first-in first-out;
when the script is empty the server echoes the last user message.

Run ``python -m tests.emulators.fake_llm --port 9999`` for a zero-latency
echo server to benchmark against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import secrets
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.emulators import audio
from tests.emulators.lifecycle import Changes, Served, reset_connection

__all__ = ["FakeLLM", "RecordedRequest", "Reply", "ToolCall"]

_SYSTEM_FINGERPRINT = "fp_fakellm"
_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_DONE = b"data: [DONE]\n\n"
_WORDS = re.compile(r"\S+\s*|\s+")
_ARGUMENT_FRAGMENT = 8  # characters per streamed tool-call argument fragment
_SHUTDOWN_TIMEOUT = 0.05  # seconds (twice over) that in-flight requests get when the fake stops
_DEFAULT_TRANSCRIPTION = "transcribed audio"
_SPEECH_INPUT_MAX = 4096  # OpenAI's limit on /audio/speech `input`
_SPEECH_CHUNKS = 4
"""Parts a streamed /audio/speech answer (``Reply.chunk_delay``) is sent in."""
_SPEECH_FORMATS = {  # response_format -> (content type, bytes); aac and flac are not produced by the fake
    "mp3": ("audio/mpeg", audio.mp3),
    "opus": ("audio/ogg", audio.ogg_opus),
    "wav": ("audio/wav", audio.wav),
}
_MODERATION_CATEGORIES = (  # omni-moderation's categories, in OpenAI's order
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)
_MODERATION_FLAG_SCORE = 0.5
_DEFAULT_ERROR_MESSAGES = {
    400: "Invalid request.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
}


def _new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ToolCall:
    """A function call the assistant asks the client to make."""

    name: str
    arguments: dict[str, Any] | str
    """A dict is JSON-encoded; a string is sent verbatim (it may even be invalid JSON)."""
    id: str = field(default_factory=_new_call_id)

    def arguments_json(self) -> str:
        """The arguments as the JSON string carried on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return orjson.dumps(self.arguments).decode()


@dataclass
class Reply:
    """One scripted answer; the fake consumes them FIFO, one per request."""

    text: str = ""
    """Assistant content."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    """When non-empty the finish reason is ``"tool_calls"``."""
    reasoning: str | None = None
    """Sent as ``message.reasoning_content`` (``delta.reasoning_content`` when streaming)."""
    reasoning_details: list[dict[str, Any]] | None = None
    """OpenRouter's typed thinking (``{"type": "reasoning.summary", "summary": ...}``, ``reasoning.text``
    with ``text``, ``reasoning.encrypted`` with ``data``): sent as ``message.reasoning_details`` beside a
    flat ``message.reasoning`` joining their texts, as OpenRouter does; one entry per chunk when streaming."""
    status: int = 200
    """Any other status answers with an OpenAI error body instead."""
    error_message: str = ""
    """Message of the error body; empty means a typical OpenAI message for ``status``."""
    retry_after: float | None = None
    """Seconds sent in the ``Retry-After`` header of an error answer."""
    headers: dict[str, str] = field(default_factory=dict)
    """More headers of an error answer, e.g. ``x-should-retry`` or ``Retry-After`` as an HTTP date."""
    refusal: str | None = None
    """The model declines: ``message.refusal`` (``delta.refusal`` when streaming), with no content."""
    cached_tokens: int | None = None
    """Reported as ``usage.prompt_tokens_details.cached_tokens``."""
    delay: float = 0.0
    """Seconds to wait before answering (before the first chunk when streaming)."""
    hold: asyncio.Event | None = None
    """Answer only once this is set (after ``delay``): a test decides when, without sleeping."""
    chunk_delay: float = 0.0
    """Seconds between stream chunks (for /audio/speech: the audio is then sent in parts, chunked)."""
    rest_hold: asyncio.Event | None = None
    """/audio/speech: the first part of the audio goes at once, the rest only once this is set."""
    end_delay: float = 0.0
    """Seconds between ``data: [DONE]`` and the end of the streamed body (the last chunk of the
    chunked encoding then comes in a read of its own, as it can from a real server)."""
    drop_connection: bool = False
    """Reset the TCP connection instead of answering."""
    prompt_tokens: int | None = None
    """Reported usage; ``None`` computes it from the request (characters / 4, at least 1)."""
    completion_tokens: int | None = None
    """Reported usage; ``None`` computes it from the answer (characters / 4, at least 1)."""


@dataclass
class RecordedRequest:
    """A request the fake received, kept in :attr:`FakeLLM.requests`."""

    path: str
    headers: Mapping[str, str]
    """Case-insensitive request headers."""
    body: dict[str, Any]
    """The parsed JSON object ({} if the body was not one); for multipart uploads the
    form fields, with each file described as ``{"filename", "content_type", "size"}``."""
    peer_port: int | None = None
    """The client's TCP port: the same on two requests when the client kept its connection."""


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


def _detail_text(entry: dict[str, Any]) -> str:
    """The readable text of one ``reasoning_details`` entry (encrypted ones have none)."""
    return str(entry.get("summary") or entry.get("text") or "")


def _content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _echo(body: dict[str, Any]) -> Reply:
    """The default answer: ``"echo: "`` followed by the last user message."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return Reply(text="echo: " + _content_text(message.get("content")))
    return Reply(text="echo: ")


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _error_response(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> web.Response:
    return web.Response(status=status, body=_error_body(message, type_, code, param), content_type=_JSON)


def _reply_error(reply: Reply) -> web.Response:
    """The OpenAI-style error answer a scripted non-200 :class:`Reply` stands for."""
    if reply.status == 429:
        type_, code = "requests", "rate_limit_exceeded"
    elif reply.status >= 500:
        type_, code = "server_error", None
    else:
        type_, code = "invalid_request_error", None
    message = reply.error_message or _DEFAULT_ERROR_MESSAGES.get(reply.status, "Request failed.")
    response = _error_response(reply.status, message, type_, code)
    if reply.retry_after is not None:
        seconds = reply.retry_after
        response.headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    response.headers.update(reply.headers)
    return response


class FakeLLM(Served):
    """A fake OpenAI-compatible server; use ``async with FakeLLM() as fake:``.

    Endpoints under ``/v1``: ``POST /chat/completions``, ``GET /models``, ``POST /moderations``
    (scripted category scores), ``POST /embeddings`` (bag-of-words vectors),
    ``POST /audio/transcriptions`` and ``POST /audio/speech`` (real, silent audio files of
    :attr:`speech_seconds`: MP3, Ogg/Opus or WAV per ``response_format``; see ``audio.py``).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: list[str] | None = None,
        default_reply: Callable[[dict[str, Any]], Reply] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure the server; nothing listens until :meth:`start`.

        ``api_key`` makes every endpoint require ``Authorization: Bearer <api_key>``.
        ``models`` restricts the accepted chat models and is what ``GET /models``
        lists. ``default_reply`` answers (from the request body) when the script
        is empty; the fallback echoes the last user message. ``port=0`` picks a
        free port.
        """
        self.requests: list[RecordedRequest] = []
        """Every chat completion and transcription request, in arrival order."""
        self.cancelled = 0
        """Requests whose client went away before their answer was complete."""
        self.max_in_flight = 0
        """The most chat completions being answered at once so far (set it to 0 to measure afresh)."""
        self._in_flight = 0
        self.max_in_flight_by_user: Counter[str] = Counter()
        """The same per `user` of the request body ("" without one)."""
        self._in_flight_by_user: Counter[str] = Counter()
        self.speech_seconds = 1.0
        """Length of the audio /audio/speech answers with."""
        self._speech_script: deque[Reply] = deque()
        self._moderation_script: deque[dict[str, float]] = deque()
        self.embedding_dimensions = 16
        """Length of /embeddings vectors when the request asks for none."""
        self.synonyms: dict[str, str] = {}
        """Words /embeddings reads as another (lower case): {"automobile": "car"} puts both on one axis."""
        self.embeddings_status: int | None = None
        """When set, /embeddings answers with this HTTP status and an error body."""
        self.base_url = ""
        """``http://<host>:<port>/v1`` once started."""
        self._host = host
        self._port = port
        self._models = models
        self._default_reply = default_reply or _echo
        self._auth = None if api_key is None else f"Bearer {api_key}"
        self._script: deque[Reply] = deque()
        self._judge_script: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6)
        self._changes = Changes()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": model, "object": "model", "created": 1700000000, "owned_by": "fake-llm"}
                    for model in (models or ["fake-model"])
                ],
            }
        )
        self._unauthorized_body = _error_body(
            "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
        )

    async def start(self) -> None:
        """Start listening; :attr:`base_url` is valid afterwards."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/audio/transcriptions", self._transcription)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/moderations", self._moderation)
        app.router.add_post("/v1/embeddings", self._embeddings)
        # handler_cancellation: a client disconnect cancels its handler, which is
        # how disconnects during a delay are noticed (aiohttp's default is off).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.base_url = f"http://{self._host}:{site.port}/v1"

    async def stop(self) -> None:
        """Stop listening and drop in-flight requests (not counted as cancelled)."""
        if self._runner is not None:
            self._stopping = True
            await self._runner.cleanup()
            self._runner = None

    def script(self, *replies: Reply) -> None:
        """Append answers to the FIFO queue; each request consumes one."""
        self._script.extend(replies)

    def script_judge(self, *replies: Reply) -> None:
        """Append answers for requests asking for a JSON object (``response_format: json_object``, as the
        policy judge does), taken before the main script: a judge running at the same time as the model
        call gets its own answers whichever request arrives first."""
        self._judge_script.extend(replies)

    def script_speech(self, *replies: Reply) -> None:
        """Append /audio/speech outcomes (``delay``, ``hold``, ``status``...; the text is ignored)."""
        self._speech_script.extend(replies)

    def script_moderation(self, *scores: dict[str, float]) -> None:
        """Append /moderations answers: category scores (0-1) to report, every other category 0. A
        category outside OpenAI's list (e.g. "political") is reported too, as other servers may."""
        self._moderation_script.extend(scores)

    def moderation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/moderations")]

    def speech_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/audio/speech")]

    async def wait_for_requests(self, n: int, timeout: float = 5) -> None:
        """Wait until at least ``n`` requests were received; TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: len(self.requests) >= n, timeout)

    async def wait_for_cancelled(self, n: int, timeout: float = 5) -> None:
        """Wait until :attr:`cancelled` reaches ``n``; TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: self.cancelled >= n, timeout)

    async def _received(self, request: web.Request) -> tuple[Any, dict[str, Any], web.Response | None]:
        """The request's JSON (None when it is not JSON), recorded as its body (a dict, else empty), and the
        401 to answer when the key is wrong."""
        try:
            parsed = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        self._record(request, body)
        return parsed, body, self._unauthorized(request)

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self.requests.append(RecordedRequest(path=request.path, headers=request.headers, body=body,
                                             peer_port=peer[1] if peer else None))
        self._changes.notify()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        if self._judge_script and body.get("response_format") == {"type": "json_object"}:
            return self._judge_script.popleft()
        if self._script:
            return self._script.popleft()
        return self._default_reply(body)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self._auth is None or request.headers.get("Authorization") == self._auth:
            return None
        return web.Response(status=401, body=self._unauthorized_body, content_type=_JSON)

    def _count_cancelled(self) -> None:
        if not self._stopping:
            self.cancelled += 1
            self._changes.notify()

    async def _list_models(self, request: web.Request) -> web.Response:
        if (unauthorized := self._unauthorized(request)) is not None:
            return unauthorized
        return web.Response(body=self._models_body, content_type=_JSON)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer_completion(request)
        finally:
            self._in_flight -= 1

    async def _answer_completion(self, request: web.Request) -> web.StreamResponse:
        parsed, body, unauthorized = await self._received(request)
        if unauthorized is not None:
            return unauthorized
        if not isinstance(parsed, dict):
            return _error_response(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)",
                "invalid_request_error",
                None,
            )
        model = body.get("model")
        if not isinstance(model, str):
            return _error_response(400, "you must provide a model parameter", "invalid_request_error", None)
        if self._models is not None and model not in self._models:
            return _error_response(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        reply = self._next_reply(body)
        user = body.get("user") if isinstance(body.get("user"), str) else ""
        self._in_flight_by_user[user] += 1
        self.max_in_flight_by_user[user] = max(self.max_in_flight_by_user[user], self._in_flight_by_user[user])
        try:
            early = await self._delay_or_fail(request, reply)
            if early is not None:
                return early
            if body.get("stream") is True:
                return await self._stream(request, body, reply)
            return web.Response(body=orjson.dumps(self._completion(body, reply)), content_type=_JSON)
        except asyncio.CancelledError:
            self._count_cancelled()
            raise
        finally:
            self._in_flight_by_user[user] -= 1

    async def _transcription(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        body: dict[str, Any] = {
            name: value
            if isinstance(value, str)
            else {
                "filename": value.filename,
                "content_type": value.content_type,
                "size": len(value.file.read()),
            }
            for name, value in form.items()
        }
        self._record(request, body)
        if (unauthorized := self._unauthorized(request)) is not None:
            return unauthorized
        reply = self._script.popleft() if self._script else Reply(text=_DEFAULT_TRANSCRIPTION)
        try:
            early = await self._delay_or_fail(request, reply)
        except asyncio.CancelledError:
            self._count_cancelled()
            raise
        if early is not None:
            return early
        return web.Response(body=orjson.dumps({"text": reply.text}), content_type=_JSON)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        _, body, unauthorized = await self._received(request)
        if unauthorized is not None:
            return unauthorized
        for name in ("model", "input", "voice"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _error_response(400, f"Missing required parameter: '{name}'.", "invalid_request_error",
                                       "missing_required_parameter", name)
        if len(body["input"]) > _SPEECH_INPUT_MAX:
            return _error_response(400, f"String should have at most {_SPEECH_INPUT_MAX} characters",
                                   "invalid_request_error", "string_too_long", "input")
        audio_format = body.get("response_format", "mp3")
        if audio_format not in _SPEECH_FORMATS:
            return _error_response(400, f"Invalid value: '{audio_format}'.", "invalid_request_error",
                                   "invalid_value", "response_format")
        reply = self._speech_script.popleft() if self._speech_script else Reply()
        try:
            early = await self._delay_or_fail(request, reply)
        except asyncio.CancelledError:
            self._count_cancelled()
            raise
        if early is not None:
            return early
        content_type, make = _SPEECH_FORMATS[audio_format]
        data = make(self.speech_seconds)
        if not reply.chunk_delay and reply.rest_hold is None:
            return web.Response(body=data, content_type=content_type)
        # Streamed as OpenAI does (chunked): headers and the first part at once, the rest `chunk_delay` apart.
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        step = -(-len(data) // _SPEECH_CHUNKS)
        for start in range(0, len(data), step):
            if start and reply.rest_hold is not None:
                await reply.rest_hold.wait()
            elif start:
                await asyncio.sleep(reply.chunk_delay)
            await response.write(data[start:start + step])
        await response.write_eof()
        return response

    async def _moderation(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's POST /moderations: one result per input, ``flagged`` when a score reaches 0.5."""
        _, body, unauthorized = await self._received(request)
        if unauthorized is not None:
            return unauthorized
        if not isinstance(body.get("input"), str | list):
            return _error_response(400, "Missing required parameter: 'input'.", "invalid_request_error",
                                   "missing_required_parameter", "input")
        given = self._moderation_script.popleft() if self._moderation_script else {}
        scores = {**dict.fromkeys(_MODERATION_CATEGORIES, 0.0), **given}
        result = {
            "flagged": any(score >= _MODERATION_FLAG_SCORE for score in scores.values()),
            "categories": {name: score >= _MODERATION_FLAG_SCORE for name, score in scores.items()},
            "category_scores": scores,
            "category_applied_input_types": {name: ["text"] for name in scores},
        }
        return web.Response(body=orjson.dumps({
            "id": f"modr-{self._id_prefix}{next(self._ids)}", "model": body.get("model", "omni-moderation-latest"),
            "results": [result],
        }), content_type=_JSON)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's POST /embeddings: a bag of words per input, each word (after :attr:`synonyms`) on the
        axis its CRC-32 picks, so texts sharing words (or synonyms) point the same way; not normalised."""
        _, body, unauthorized = await self._received(request)
        if unauthorized is not None:
            return unauthorized
        if self.embeddings_status is not None:
            return _error_response(self.embeddings_status, "embeddings unavailable", "server_error", None)
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _error_response(400, "Missing required parameter: 'input'.", "invalid_request_error",
                                   "missing_required_parameter", "input")
        size = int(body.get("dimensions") or self.embedding_dimensions)
        data, words_read = [], 0
        for index, text in enumerate(texts):
            vector = [0.0] * size
            words = re.findall(r"\w+", text.lower())
            words_read += len(words)
            for word in words:
                vector[zlib.crc32(self.synonyms.get(word, word).encode()) % size] += 1.0
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return web.Response(body=orjson.dumps({
            "object": "list", "data": data, "model": body.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": words_read, "total_tokens": words_read},
        }), content_type=_JSON)

    async def _delay_or_fail(self, request: web.Request, reply: Reply) -> web.Response | None:
        """Wait ``reply.delay`` (and ``reply.hold``); then the answer if the reply is a failure, else None."""
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.hold is not None:
            await reply.hold.wait()
        if reply.drop_connection:
            reset_connection(request)
            return web.Response()  # aiohttp's write to the aborted transport fails silently
        if reply.status != 200:
            return _reply_error(reply)
        return None

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt = reply.prompt_tokens
        if prompt is None:
            messages = body.get("messages")
            chars = (
                sum(len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
                if isinstance(messages, list)
                else 0
            )
            prompt = _tokens(chars)
        completion = reply.completion_tokens
        if completion is None:
            chars = len(reply.text) + len(reply.reasoning or "")
            chars += sum(len(call.name) + len(call.arguments_json()) for call in reply.tool_calls)
            completion = _tokens(chars)
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if reply.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens, "audio_tokens": 0}
        return usage

    def _envelope(self, body: dict[str, Any], object_: str) -> dict[str, Any]:
        """The fields shared by a completion and all chunks of one stream."""
        return {
            "id": f"chatcmpl-{self._id_prefix}{next(self._ids):012d}",
            "object": object_,
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if reply.tool_calls and not reply.text else reply.text,
        }
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if reply.reasoning_details is not None:
            message["reasoning"] = "".join(_detail_text(entry) for entry in reply.reasoning_details)
            message["reasoning_details"] = reply.reasoning_details
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.tool_calls
            ]
        message["refusal"] = reply.refusal
        if reply.refusal is not None:
            message["content"] = None
        message["annotations"] = []
        return {
            **self._envelope(body, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": self._usage(body, reply),
        }

    def _chunks(self, body: dict[str, Any], reply: Reply) -> list[bytes]:
        """The SSE events of a streamed answer, ``data: [DONE]`` included."""
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        envelope = self._envelope(body, "chat.completion.chunk")
        # With include_usage OpenAI adds "usage": null to every chunk but the last.
        no_usage = {"usage": None} if include_usage else {}

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return b"data: " + orjson.dumps({**envelope, "choices": [choice], **no_usage}) + b"\n\n"

        events = [event({"role": "assistant", "content": "", "refusal": None})]
        events += [
            event({"content": None, "reasoning_content": piece})
            for piece in _WORDS.findall(reply.reasoning or "")
        ]
        events += [
            event({"content": None, "reasoning": _detail_text(entry), "reasoning_details": [{**entry, "index": n}]})
            for n, entry in enumerate(reply.reasoning_details or ())
        ]
        events += [event({"content": piece}) for piece in _WORDS.findall(reply.text)]
        events += [event({"refusal": piece}) for piece in _WORDS.findall(reply.refusal or "")]
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            events.append(event({"tool_calls": [head]}))
            arguments = call.arguments_json()
            for start in range(0, len(arguments), _ARGUMENT_FRAGMENT):
                fragment = {"arguments": arguments[start : start + _ARGUMENT_FRAGMENT]}
                events.append(event({"tool_calls": [{"index": index, "function": fragment}]}))
        events.append(event({}, "tool_calls" if reply.tool_calls else "stop"))
        if include_usage:
            usage_chunk = {**envelope, "choices": [], "usage": self._usage(body, reply)}
            events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
        events.append(_DONE)
        return events

    async def _stream(self, request: web.Request, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        events = self._chunks(body, reply)
        response = web.StreamResponse(headers={"Content-Type": _SSE, "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            if reply.chunk_delay > 0:
                for i, data in enumerate(events):
                    if i:
                        await asyncio.sleep(reply.chunk_delay)
                    await response.write(data)
            else:
                await response.write(b"".join(events))
            if reply.end_delay > 0:
                await asyncio.sleep(reply.end_delay)
            await response.write_eof()
        except ConnectionResetError:
            # The peer vanished between two writes, before aiohttp cancelled this handler.
            self._count_cancelled()
        return response


async def _serve_forever(host: str, port: int, api_key: str | None, models: list[str] | None) -> None:
    async with FakeLLM(api_key=api_key, models=models, host=host, port=port) as fake:
        print(f"fake LLM listening on {fake.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: serve zero-latency echo answers until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.fake_llm", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--model", dest="models", action="append", help="accepted model (repeatable)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner: Callable[..., None] = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve_forever(args.host, args.port, args.api_key, args.models))


if __name__ == "__main__":
    main()
