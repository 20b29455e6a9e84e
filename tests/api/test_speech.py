"""Spoken answers through the API: sources checked when a client is saved, the answer's audio on the
web chat (the fake speech endpoint's bytes, cached), the summary call, and a separately configured source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import create_gateway
from tests.emulators.audio import mp3
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.metrics import scrape
from tests.support.server import RunningServer
from tests.support.webchat import client_body, create_client, open_session, prompt, public, sse_events

SPEAKS = {"audioSynthesisSource": "Gpt4oTts"}


async def events(server: RunningServer, key: str, text: str) -> list[tuple[str, Any]]:
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt(text)) as response:
        assert response.status == 200
        return [event async for event in sse_events(response)]


async def done_of(server: RunningServer, key: str, text: str) -> dict[str, Any]:
    return next(data for name, data in await events(server, key, text) if name == "done")


async def audio_of(server: RunningServer, key: str, message_id: str) -> tuple[int, str, bytes]:
    async with server.http.get(server.url + public(key, f"/messages/{message_id}/audio")) as response:
        return response.status, response.content_type, await response.read()


@pytest.mark.parametrize("source", ["ElevenV3", "Bogus"])
async def test_an_unconfigured_source_is_refused_when_saved(
    server: RunningServer, fake_llm: FakeLLM, source: str
) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, body = await server.call("POST", "/api/v1/web-chat-client",
                                     json=client_body(gateway_id, audioSynthesisSource=source))
    assert status == 400 and "clientParameters.audioSynthesisSource" in body["message"]
    assert "Gpt4oTts" in body["message"]  # says what is configured
    client_id = await create_client(server, fake_llm)
    status, body = await server.call("PUT", f"/api/v1/web-chat-client/{client_id}",
                                     json={"clientParameters": {"audioSynthesisSource": source}})
    assert status == 400 and "audioSynthesisSource" in body["message"]


async def test_the_web_answer_has_audio_from_the_speech_endpoint_once(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    client_id = await create_client(server, fake_llm, **SPEAKS, audioSynthesisVoice="sage")
    key = (await open_session(server, client_id))["accessKey"]
    fake_llm.script(Reply(text="Open **9 to 5**.\n\n```\nhours()\n```"))
    done = await done_of(server, key, "hours?")
    assert done["audio"] is True
    for _ in range(2):  # a second play is served from the cache
        status, content_type, body = await audio_of(server, key, done["messageId"])
        assert (status, content_type, body) == (200, "audio/mpeg", mp3(1.0))
    [speech] = fake_llm.speech_requests()
    assert speech.body == {"model": "gpt-4o-mini-tts", "voice": "sage", "input": "Open 9 to 5.",
                           "response_format": "mp3"}
    _, info = await server.call("GET", public(key))
    assert info["messages"][-1]["audio"] is True and info["client"]["audioSynthesisEnabled"] is True


async def test_a_head_request_on_the_audio_pays_for_no_synthesis(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, **SPEAKS)
    key = (await open_session(server, client_id))["accessKey"]
    done = await done_of(server, key, "hello")
    url = server.url + public(key, f"/messages/{done['messageId']}/audio")
    async with server.http.head(url) as response:
        assert (response.status, response.content_type) == (200, "audio/mpeg")
    assert fake_llm.speech_requests() == []
    assert await audio_of(server, key, done["messageId"]) == (200, "audio/mpeg", mp3(1.0))
    async with server.http.head(url) as response:  # kept now: its length is known
        assert response.status == 200 and response.content_length == len(mp3(1.0))
    assert len(fake_llm.speech_requests()) == 1


async def test_the_audio_streams_as_the_endpoint_sends_it_and_is_kept_with_the_answer(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    client_id = await create_client(server, fake_llm, **SPEAKS)
    key = (await open_session(server, client_id))["accessKey"]
    fake_llm.script(Reply(text="We open at nine."))
    done = await done_of(server, key, "hours?")
    rest = asyncio.Event()
    fake_llm.script_speech(Reply(rest_hold=rest))
    async with server.http.get(server.url + public(key, f"/messages/{done['messageId']}/audio")) as response:
        assert (response.status, response.content_type) == (200, "audio/mpeg")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        first = await response.content.readany()  # while the endpoint still holds the rest of the audio
        assert first and len(first) < len(mp3(1.0)) and mp3(1.0).startswith(first)
        rest.set()
        body = first + await response.read()
    assert body == mp3(1.0)
    assert await audio_of(server, key, done["messageId"]) == (200, "audio/mpeg", mp3(1.0))  # kept: no new call
    assert len(fake_llm.speech_requests()) == 1


async def test_speech_is_counted_in_the_gateways_stats_and_the_metrics(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    status, created = await server.call("POST", "/api/v1/web-chat-client", json=client_body(gateway_id, **SPEAKS))
    assert status == 200
    key = (await open_session(server, created["id"]))["accessKey"]
    fake_llm.script(Reply(text="We open at nine.", prompt_tokens=10, completion_tokens=2),
                    Reply(text="Noted.", prompt_tokens=20, completion_tokens=1))
    first = await done_of(server, key, "hours?")
    for _ in range(2):  # the replay comes from the cache: counted, not paid again
        assert (await audio_of(server, key, first["messageId"]))[0] == 200
    second = await done_of(server, key, "thanks")
    fake_llm.script_speech(Reply(status=400))
    assert (await audio_of(server, key, second["messageId"]))[0] == 502
    _, stats = await server.call("GET", f"/api/v1/ai-gateways/{gateway_id}/stats")
    # two chat calls, one synthesis (4 input tokens estimated for its 16 characters), one failed synthesis
    assert (stats["requests"], stats["errors"]) == (4, 1)
    assert (stats["inputTokens"], stats["outputTokens"]) == (10 + 20 + 4, 2 + 1)
    metrics = await scrape(server)
    assert metrics.value("botline_speech_requests_total", source="Gpt4oTts", outcome="synthesized") == 1
    assert metrics.value("botline_speech_requests_total", source="Gpt4oTts", outcome="cached") == 1
    assert metrics.value("botline_speech_requests_total", source="Gpt4oTts", outcome="failed") == 1
    assert metrics.value("botline_speech_characters_total", source="Gpt4oTts") == len("We open at nine.")


async def test_a_failed_synthesis_is_a_clear_error_and_the_text_stays(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    client_id = await create_client(server, fake_llm, **SPEAKS)
    key = (await open_session(server, client_id))["accessKey"]
    fake_llm.script(Reply(text="The answer."))
    done = await done_of(server, key, "q")
    fake_llm.script_speech(Reply(status=400))
    status, _, body = await audio_of(server, key, done["messageId"])
    assert status == 502 and b"could not be spoken" in body
    _, info = await server.call("GET", public(key))
    assert info["messages"][-1]["content"] == "The answer."


async def test_no_audio_without_a_source_or_for_typed_messages_when_voice_only(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    silent = await create_client(server, fake_llm)
    key = (await open_session(server, silent))["accessKey"]
    done = await done_of(server, key, "hi")
    assert done["audio"] is False
    assert (await audio_of(server, key, done["messageId"]))[0] == 404
    voice_only = await create_client(server, fake_llm, **SPEAKS, audioSynthesisTrigger="VoiceMessages")
    key = (await open_session(server, voice_only))["accessKey"]
    done = await done_of(server, key, "typed")
    assert done["audio"] is False and fake_llm.speech_requests() == []


async def test_long_answers_are_summarised_before_speaking(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, **SPEAKS, summarizeTextBeforeAudioSynthesis=True)
    key = (await open_session(server, client_id))["accessKey"]
    fake_llm.script(Reply(text="Long answer. " * 60), Reply(text="In short: it is long."))
    done = await done_of(server, key, "explain")
    assert (await audio_of(server, key, done["messageId"]))[0] == 200
    summary_call = fake_llm.requests[-2]
    assert summary_call.path.endswith("/chat/completions")
    assert "read aloud" in summary_call.body["messages"][0]["content"]
    assert fake_llm.speech_requests()[0].body["input"] == "In short: it is long."


@pytest.fixture
async def voice_server() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key="sk-voice") as fake:
        yield fake


class TestOwnEndpoint:
    @pytest.fixture
    def settings_overrides(self, voice_server: FakeLLM) -> dict[str, Any]:
        return {"speech": {"sources": {"ElevenV3": {"model": "eleven_v3", "base_url": voice_server.base_url,
                                                    "api_key": "sk-voice", "default_voice": "Rachel",
                                                    "instructions": False}}}}

    async def test_a_source_with_its_own_endpoint_is_used_and_only_configured_ones_are_allowed(
        self, server: RunningServer, fake_llm: FakeLLM, voice_server: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        status, _ = await server.call("POST", "/api/v1/web-chat-client",
                                      json=client_body(gateway_id, audioSynthesisSource="Gpt4oTts"))
        assert status == 400  # the configured list replaces the default one
        client_id = await create_client(server, fake_llm, audioSynthesisSource="ElevenV3",
                                        audioSynthesisInstruction="whisper")
        key = (await open_session(server, client_id))["accessKey"]
        done = await done_of(server, key, "hi")
        assert (await audio_of(server, key, done["messageId"]))[0] == 200
        [speech] = voice_server.speech_requests()
        assert speech.headers["Authorization"] == "Bearer sk-voice"
        assert speech.body["voice"] == "Rachel" and "instructions" not in speech.body
        assert fake_llm.speech_requests() == []


class TestNoSharedCache:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"speech": {"cache_seconds": 0}}

    async def test_an_answers_audio_is_kept_with_the_conversation_even_without_the_cache(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        client_id = await create_client(server, fake_llm, **SPEAKS)
        key = (await open_session(server, client_id))["accessKey"]
        fake_llm.script(Reply(text="We open at nine."))
        done = await done_of(server, key, "hours?")
        for _ in range(3):  # the first play, then reloads
            assert await audio_of(server, key, done["messageId"]) == (200, "audio/mpeg", mp3(1.0))
        assert len(fake_llm.speech_requests()) == 1
        assert (await server.call("POST", public(key, "/retry")))[0] == 204
        fake_llm.script(Reply(text="We open at nine."))
        again = await done_of(server, key, "hours?")
        assert (await audio_of(server, key, again["messageId"]))[0] == 200
        assert len(fake_llm.speech_requests()) == 2  # the dropped answer's audio went with it; no cache


class TestAudioCapWhileStreaming:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"speech": {"max_audio_bytes": len(mp3(1.0)) // 2}}

    async def test_audio_past_the_cap_mid_stream_is_cut_off_not_passed_as_whole(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        client_id = await create_client(server, fake_llm, **SPEAKS)
        key = (await open_session(server, client_id))["accessKey"]
        fake_llm.script(Reply(text="We open at nine."))
        done = await done_of(server, key, "hours?")
        url = server.url + public(key, f"/messages/{done['messageId']}/audio")
        for _ in range(2):
            rest = asyncio.Event()
            fake_llm.script_speech(Reply(rest_hold=rest))
            async with server.http.get(url) as response:
                assert response.status == 200 and await response.content.readany()  # the first part went out
                rest.set()
                with pytest.raises(aiohttp.ClientPayloadError):  # then the connection closed, no clean end
                    await response.read()
        assert len(fake_llm.speech_requests()) == 2  # nothing was kept or cached: asked again
        _, info = await server.call("GET", public(key))
        assert info["messages"][-1]["content"] == "We open at nine."
