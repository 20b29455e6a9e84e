"""Upstream LLM storms, at each entry point: 500s, stalls past the timeout, 429 with Retry-After and
connection resets are retried `llm.max_retries` times, then the person gets a plain sentence (never
the provider's text; /v1 callers, developers, get an OpenAI-style error naming the cause), the
message they sent stays in the conversation, and the next try works.
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from botline.engine.chat import MODEL_UNAVAILABLE
from botline.engine.inbound import UNAVAILABLE_REPLY
from tests.channels.conftest import connect, session_of, store_of
from tests.channels.test_zapi import CLIENT_TOKEN, zapi
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

RETRIES = 1
TIMEOUT_SECONDS = 0.3
RETRY_AFTER = 1.0
"""Longer than the SDK's own first backoff (at most 0.5 s), so waiting it out shows."""
PHONE = "5511977776666"

__all__ = ["zapi"]  # the Z-API emulator fixture

STORMS = {
    "500s": Reply(status=500, error_message="upstream exploded at db-7.internal"),
    "stalls": Reply(text="too late", delay=TIMEOUT_SECONDS * 4),
    "429 with Retry-After": Reply(status=429, retry_after=RETRY_AFTER),
    "connection resets": Reply(drop_connection=True),
}


@pytest.fixture
def settings_overrides(zapi: FakeZapi) -> dict[str, Any]:
    return {"providers": {"zapi": {"api_url": zapi.url}},
            "llm": {"max_retries": RETRIES, "request_timeout_seconds": TIMEOUT_SECONDS}}


@pytest.mark.parametrize("storm", STORMS)
async def test_web_chat(server: RunningServer, fake_llm: FakeLLM, storm: str) -> None:
    session = await open_session(server, await create_client(server, fake_llm))
    fake_llm.script(*[STORMS[storm]] * (RETRIES + 1))

    status, body = await server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("are you there?"))

    assert status in (429, 502, 504) and body == {"message": MODEL_UNAVAILABLE}
    assert len(fake_llm.requests) == RETRIES + 1
    _, transcript = await server.call("GET", public(session["accessKey"], "/transcript.json"))
    assert transcript["messages"] == [{"role": "user", "content": "are you there?"}]
    status, body = await server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("are you there?"))
    assert (status, body["completionText"]) == (200, "echo: are you there?")  # the retry answers the same message
    _, transcript = await server.call("GET", public(session["accessKey"], "/transcript.json"))
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"]


@pytest.mark.parametrize("storm", STORMS)
async def test_a_channel(server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, storm: str) -> None:
    channel = await connect(server, fake_llm, "Zapi", {
        "instanceId": zapi.instance_id, "instanceToken": zapi.instance_token, "clientToken": CLIENT_TOKEN})
    fake_llm.script(*[STORMS[storm]] * (RETRIES + 1))

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "my order is late")) == 200
    [apology] = await zapi.wait_for_sends(1, timeout=10)

    assert apology.body["message"] == UNAVAILABLE_REPLY
    assert len(fake_llm.requests) == RETRIES + 1
    session = await session_of(server, channel.client_id, f"Zapi:{PHONE}")
    assert session is not None
    stored = await store_of(server).messages.list(session.id)
    assert [(m.role.value, m.content) for m in stored] == [("user", "my order is late")]  # no apology in history
    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "hello?")) == 200
    [_, answer] = await zapi.wait_for_sends(2, timeout=10)
    assert answer.body["message"] == "echo: hello?"
    user_turns = [m["content"] for m in fake_llm.requests[-1].body["messages"] if m["role"] == "user"]
    assert user_turns == ["my order is late", "hello?"]  # the model now sees the first message too


@pytest.mark.parametrize("storm", STORMS)
async def test_openai_compatible_api(server: RunningServer, fake_llm: FakeLLM, storm: str) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(*[STORMS[storm]] * (RETRIES + 1))
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code in (429, 502, 504)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"].startswith("The AI model")  # a developer's API: the cause is named
    assert len(fake_llm.requests) == RETRIES + 1
    if storm == "429 with Retry-After":
        assert time.monotonic() - started >= RETRY_AFTER  # the upstream's Retry-After was waited out
    answer = await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "echo: hi"
    await client.close()
