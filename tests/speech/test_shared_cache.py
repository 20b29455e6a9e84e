"""Two botline instances on one Redis share the audio cache: the same answer spoken on the second
replica (another session of the same chat client, a channel's voice note) is not paid for again; the
fake speech endpoint counts the calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from tests.emulators.audio import mp3
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.metrics import scrape
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import create_client, open_session, prompt, public, sse_events

ANSWER = "We open at nine and close at five."


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[RunningServer]]:
    prefix = unique_prefix()
    try:
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(running_server(make_settings(
                redis_url, storage={"url": redis_url, "redis_prefix": prefix}))) for _ in range(2)]
    finally:
        await delete_prefix(redis_url, prefix)


async def spoken_answer(server: RunningServer, key: str) -> tuple[int, bytes]:
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("hours?")) as response:
        done = next(data for name, data in [e async for e in sse_events(response)] if name == "done")
    async with server.http.get(server.url + public(key, f"/messages/{done['messageId']}/audio")) as audio:
        return audio.status, await audio.read()


async def test_a_second_replica_does_not_pay_for_the_same_audio(
    replicas: list[RunningServer], fake_llm: FakeLLM
) -> None:
    first, second = replicas
    client_id = await create_client(first, fake_llm, audioSynthesisSource="Gpt4oTts")
    keys = [(await open_session(first, client_id))["accessKey"] for _ in range(2)]
    fake_llm.script(Reply(text=ANSWER), Reply(text=ANSWER))
    assert await spoken_answer(first, keys[0]) == (200, mp3(1.0))
    assert await spoken_answer(second, keys[1]) == (200, mp3(1.0))  # another session, on the other replica
    assert len(fake_llm.speech_requests()) == 1
    metrics = await scrape(second)
    assert metrics.value("botline_speech_requests_total", source="Gpt4oTts", outcome="cached") == 1
