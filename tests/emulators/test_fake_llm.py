"""The fake LLM, driven only through the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import openai
import pytest

from tests.emulators.audio import mp3, parse_ogg_opus
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall

API_KEY = "sk-test"
MODEL = "gpt-test"
USER = [{"role": "user", "content": "hi"}]
TRANSPORTS = ["httpx", "aiohttp"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=API_KEY, models=[MODEL]) as server:
        yield server


def make_client(fake: FakeLLM, transport: str = "httpx", **kwargs: object) -> openai.AsyncOpenAI:
    options: dict[str, object] = {"base_url": fake.base_url, "api_key": API_KEY, "max_retries": 0, **kwargs}
    if transport == "aiohttp":
        options["http_client"] = openai.DefaultAioHttpClient()
    return openai.AsyncOpenAI(**options)  # type: ignore[arg-type]


async def test_non_streaming_text(fake: FakeLLM) -> None:
    fake.script(Reply(text="Hello there, friend.", reasoning="thinking", prompt_tokens=7, completion_tokens=3))
    async with make_client(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == "Hello there, friend."
    assert choice.message.tool_calls is None
    assert choice.message.model_extra == {"reasoning_content": "thinking"}
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (7, 10)
    recorded = fake.requests[0]
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["Authorization"] == f"Bearer {API_KEY}"
    assert recorded.body["messages"] == USER


async def test_default_reply_echoes_last_user_message(fake: FakeLLM) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]},
    ]
    async with make_client(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "echo: a b"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_streaming_text_with_usage(fake: FakeLLM, transport: str) -> None:
    text = "The quick  brown fox\njumps over the lazy dog. "
    fake.script(Reply(text=text, reasoning="Let me think."))
    async with make_client(fake, transport) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}  # type: ignore[arg-type]
        )
        chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3
    assert "".join(pieces) == text
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == "Let me think."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == (len(text) + len("Let me think.")) // 4
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_tool_calls_non_streaming(fake: FakeLLM) -> None:
    fake.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris", "days": 3}, id="call_1")]))
    async with make_client(fake) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}  # type: ignore[union-attr]


async def test_tool_calls_streaming(fake: FakeLLM) -> None:
    calls = [
        ToolCall("search", {"query": "a fairly long query string", "limit": 10}),
        ToolCall("noop", "{}"),
    ]
    fake.script(Reply(tool_calls=calls))
    async with make_client(fake) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)  # type: ignore[arg-type]
        chunks = [chunk async for chunk in stream]
    assembled: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = assembled.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            assert delta.function is not None
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert [(e["id"], e["name"]) for e in assembled.values()] == [(c.id, c.name) for c in calls]
    assert json.loads(assembled[0]["arguments"]) == {"query": "a fairly long query string", "limit": 10}
    assert assembled[1]["arguments"] == "{}"


async def test_wrong_api_key_is_authentication_error(fake: FakeLLM) -> None:
    async with make_client(fake, api_key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    assert caught.value.code == "invalid_api_key"
    assert caught.value.message.startswith("Error code: 401")


async def test_unknown_model_is_not_found(fake: FakeLLM) -> None:
    async with make_client(fake) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-nope", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"
    assert "`gpt-nope` does not exist" in str(caught.value)


async def test_rate_limit_is_retried_after_retry_after(fake: FakeLLM) -> None:
    fake.script(Reply(status=429, retry_after=0.05), Reply(text="finally"))
    async with make_client(fake, max_retries=1) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "finally"
    assert len(fake.requests) == 2


async def test_rate_limit_without_retries_raises(fake: FakeLLM) -> None:
    fake.script(Reply(status=429, retry_after=1))
    async with make_client(fake) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    assert caught.value.response.headers["Retry-After"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


async def test_dropped_connection_is_connection_error(fake: FakeLLM) -> None:
    fake.script(Reply(drop_connection=True), Reply(text="after"))
    async with make_client(fake) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
        completion = await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "after"
    assert fake.cancelled == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancelled_request_during_delay_is_counted(fake: FakeLLM, transport: str) -> None:
    fake.script(Reply(text="too late", delay=5))
    async with make_client(fake, transport) as client:
        task = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=USER))  # type: ignore[arg-type]
        await fake.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await fake.wait_for_cancelled(1, timeout=2)
    assert fake.cancelled == 1


async def test_stream_closed_midway_is_counted(fake: FakeLLM) -> None:
    fake.script(Reply(text="word " * 50, chunk_delay=0.02))
    async with make_client(fake) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)  # type: ignore[arg-type]
        first = await stream.__anext__()
        await stream.close()
        await fake.wait_for_cancelled(1, timeout=2)
    assert first.choices[0].delta.role == "assistant"
    assert fake.cancelled == 1


async def test_models_and_transcription(fake: FakeLLM) -> None:
    fake.script(Reply(text="hello from audio"))
    async with make_client(fake) as client:
        models = await client.models.list()
        transcription = await client.audio.transcriptions.create(
            model="whisper-1", file=("voice.ogg", io.BytesIO(b"OggS fake"), "audio/ogg")
        )
    assert [model.id for model in models.data] == [MODEL]
    assert transcription.text == "hello from audio"
    recorded = fake.requests[-1]
    assert recorded.path == "/v1/audio/transcriptions"
    assert recorded.body["model"] == "whisper-1"
    assert recorded.body["file"] == {"filename": "voice.ogg", "content_type": "audio/ogg", "size": 9}


async def test_max_in_flight_counts_overlapping_requests(fake: FakeLLM) -> None:
    fake.script(Reply(text="one", delay=0.2), Reply(text="two", delay=0.2), Reply(text="three"))
    async with make_client(fake) as client:
        ask = [client.chat.completions.create(model=MODEL, messages=USER) for _ in range(2)]  # type: ignore[call-overload]
        await asyncio.gather(*ask)
        assert fake.max_in_flight == 2
        fake.max_in_flight = 0
        await client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
    assert fake.max_in_flight == 1


async def test_speech_answers_real_audio_in_the_asked_format() -> None:
    async with FakeLLM() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        speech = await client.audio.speech.create(model="tts-1", voice="nova", input="hello", response_format="opus")
        assert parse_ogg_opus(speech.content).seconds > 0.9
        default = await client.audio.speech.create(model="tts-1", voice="nova", input="hello")
        assert default.content == mp3(1.0)
        with pytest.raises(openai.BadRequestError, match="at most 4096"):
            await client.audio.speech.create(model="tts-1", voice="nova", input="x" * 4097)
        await client.close()
