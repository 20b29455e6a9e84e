"""/v1 through the official openai SDK, against a gateway pointing at the fake LLM."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer


def sdk(server: RunningServer, key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key or server.admin_key, max_retries=0)


async def test_non_streaming_answer_applies_the_gateway(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(
        server, fake_llm, systemInstruction="You are Botline.", temperature=0.3, topP=0.9, maxCompletionTokens=200
    )
    fake_llm.script(Reply(text="Paris.", prompt_tokens=12, completion_tokens=3))
    client = sdk(server)
    answer = await client.chat.completions.create(
        model=gateway_id, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert answer.choices[0].message.content == "Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens == 15
    upstream = fake_llm.requests[-1].body
    assert upstream["messages"][0]["role"] == "system"
    assert upstream["messages"][0]["content"].startswith("You are Botline.")
    assert upstream["messages"][-1] == {"role": "user", "content": "Capital of France?"}
    assert upstream["temperature"] == 0.3 and upstream["top_p"] == 0.9
    assert upstream["max_completion_tokens"] == 200
    await client.close()


async def test_streaming_answer_arrives_in_pieces_with_usage(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, systemInstruction="Be brief.")
    fake_llm.script(Reply(text="one two three four", chunk_delay=0.01))  # what arrives together is sent together
    client = sdk(server)
    stream = await client.chat.completions.create(
        model=gateway_id, messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == "one two three four"
    assert len(pieces) >= 4
    assert usage is not None and usage.completion_tokens > 0
    assert fake_llm.requests[-1].body["messages"][0]["content"].startswith("Be brief.")
    await client.close()


async def test_slug_works_as_the_model_name(server: RunningServer, fake_llm: FakeLLM) -> None:
    await create_gateway(server, fake_llm, name="Sales Assistant")
    client = sdk(server)
    answer = await client.chat.completions.create(
        model="sales-assistant", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "echo: hi"
    models = await client.models.list()
    assert [m.id for m in models.data] and all(m.object == "model" for m in models.data)
    await client.close()


async def test_without_any_gateway_the_answer_says_no_model_is_configured(server: RunningServer) -> None:
    client = sdk(server)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["message"] == (
        "No AI model is configured for this assistant yet: create an AI gateway and assign it."
    )
    await client.close()


async def test_unknown_model_is_a_404_the_sdk_understands(server: RunningServer, fake_llm: FakeLLM) -> None:
    await create_gateway(server, fake_llm)
    client = sdk(server)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "nope" in caught.value.message
    await client.close()


async def test_wrong_key_is_a_401_the_sdk_understands(server: RunningServer) -> None:
    client = sdk(server, key="sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    await client.close()


async def test_null_stream_and_n_mean_the_defaults_as_in_openais_spec(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="Hi."))
    status, answer = await server.call("POST", "/v1/chat/completions", json={
        "model": gateway_id, "messages": [{"role": "user", "content": "hi"}], "stream": None, "n": None})
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "Hi."
