"""The turn pipeline end to end: botline /v1 -> pipeline -> openai SDK -> fake LLM (and callbacks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"llm": {"max_retries": 1, "max_tool_rounds": 3}}


@pytest.fixture
async def site() -> AsyncIterator[CallbackServer]:
    async with CallbackServer() as server:
        yield server


def weather_function(site: CallbackServer, *answers: Answer) -> dict[str, Any]:
    return {
        "name": "get_weather",
        "description": "Weather forecast for a city.",
        "callbackUrl": site.answer("/tools/weather", *(answers or (Answer(body="Sunny, 24C"),))),
        "headers": {"X-Site-Secret": "s3cret"},
        "contentFormat": WEATHER_SCHEMA,
    }


async def ask(server: RunningServer, model: str, content: str = "hi", **extra: Any) -> Any:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    try:
        return await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], **extra
        )
    finally:
        await client.close()


class TestProtocolFunctions:
    async def test_callback_gets_the_documented_body_and_its_answer_reaches_the_model(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[weather_function(site)])
        fake_llm.script(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "Lisbon"}, id="call_1")]),
            Reply(text="It is sunny in Lisbon."),
        )
        answer = await ask(server, gateway_id, "Weather in Lisbon?", user="user-42", metadata={"plan": "pro"})

        assert answer.choices[0].message.content == "It is sunny in Lisbon."
        [call] = site.received_at("/tools/weather")
        assert call.method == "POST" and call.headers["X-Site-Secret"] == "s3cret"
        body = call.json()
        assert body["type"] == "tool_call"
        assert body["function"] == {"name": "get_weather", "content": {"city": "Lisbon"}}
        context = body["context"]
        assert context["externalUserId"] == "user-42"
        assert context["metadata"] == {"plan": "pro"}
        assert context["callSource"] == "OpenAiCompatible"
        assert "conversationToken" in context and context["moment"].endswith("+00:00")
        second = fake_llm.requests[1].body["messages"]
        assert second[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24C"}
        assert second[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
        offered = fake_llm.requests[0].body["tools"][0]["function"]
        assert offered == {"name": "get_weather", "description": "Weather forecast for a city.",
                           "parameters": WEATHER_SCHEMA}

    async def test_invalid_arguments_go_back_to_the_model_without_calling_the_site(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[weather_function(site)])
        fake_llm.script(Reply(tool_calls=[ToolCall("get_weather", {"days": 0})]), Reply(text="Which city?"))
        answer = await ask(server, gateway_id)
        assert answer.choices[0].message.content == "Which city?"
        assert site.received_at("/tools/weather") == []
        tool_message = fake_llm.requests[1].body["messages"][-1]
        assert tool_message["role"] == "tool" and "Invalid arguments for get_weather" in tool_message["content"]

    async def test_a_failing_callback_gives_the_model_a_short_error(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(
            server, fake_llm, protocolFunctions=[weather_function(site, Answer(status=500, body="stack trace"))]
        )
        fake_llm.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Rome"})]), Reply(text="Sorry."))
        answer = await ask(server, gateway_id)
        assert answer.choices[0].message.content == "Sorry."
        tool_message = fake_llm.requests[1].body["messages"][-1]
        assert "failed" in tool_message["content"] and "stack trace" not in tool_message["content"]

    async def test_function_sources_are_fetched_once_and_cached(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        listing = {"functions": [weather_function(site)]}
        import orjson

        source = site.answer("/functions", Answer(body=orjson.dumps(listing), content_type="application/json"))
        gateway_id = await create_gateway(server, fake_llm, protocolFunctionSources=[source])
        await ask(server, gateway_id)
        await ask(server, gateway_id)
        assert len(site.received_at("/functions")) == 1
        assert fake_llm.requests[0].body["tools"][0]["function"]["name"] == "get_weather"

    async def test_a_broken_function_source_fails_the_turn_clearly(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        source = site.answer("/functions", Answer(status=503))
        gateway_id = await create_gateway(server, fake_llm, protocolFunctionSources=[source])
        with pytest.raises(openai.APIStatusError) as caught:
            await ask(server, gateway_id)
        assert caught.value.status_code == 502
        assert "unavailable" in caught.value.message
        assert "/functions" not in caught.value.message and "127.0.0.1" not in caught.value.message  # M5: logged
        assert fake_llm.requests == []

    async def test_the_last_allowed_round_offers_no_tools(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[weather_function(site)])
        fake_llm.script(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "A"})]),
            Reply(tool_calls=[ToolCall("get_weather", {"city": "B"})]),
            Reply(text="Done."),
        )
        answer = await ask(server, gateway_id)
        assert answer.choices[0].message.content == "Done."
        assert [("tools" in r.body) for r in fake_llm.requests] == [True, True, False]


class TestClientTools:
    async def test_client_tools_are_returned_to_the_caller_not_executed(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[weather_function(site)])
        fake_llm.script(Reply(tool_calls=[ToolCall("open_door", {"door": "front"}, id="call_x")]))
        client_tool = {"type": "function", "function": {"name": "open_door", "parameters": {"type": "object"}}}
        answer = await ask(server, gateway_id, tools=[client_tool])
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].function.name == "open_door"
        assert choice.message.tool_calls[0].id == "call_x"
        assert site.received == []
        names = [t["function"]["name"] for t in fake_llm.requests[0].body["tools"]]
        assert names == ["get_weather", "open_door"]


class TestRetries:
    async def test_a_429_with_retry_after_is_retried(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(status=429, retry_after=0.05), Reply(text="fine"))
        answer = await ask(server, gateway_id)
        assert answer.choices[0].message.content == "fine"
        assert len(fake_llm.requests) == 2

    async def test_a_dropped_connection_is_retried(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(drop_connection=True), Reply(text="recovered"))
        answer = await ask(server, gateway_id)
        assert answer.choices[0].message.content == "recovered"

    async def test_when_retries_run_out_the_caller_gets_a_clear_error(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(status=500), Reply(status=500))
        with pytest.raises(openai.APIStatusError) as caught:
            await ask(server, gateway_id)
        assert caught.value.status_code == 502
        assert caught.value.body["message"].startswith("The AI model failed")

    async def test_upstream_rate_limit_is_passed_on_as_429(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(status=429, retry_after=0.01), Reply(status=429, retry_after=0.01))
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(server, gateway_id)
        assert "rate limited" in caught.value.message


class TestContextBudget:
    async def test_throw_refuses_without_calling_the_model(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        gateway_id = await create_gateway(server, fake_llm, contextMaximumSize=50, contextOverflowAction="Throw")
        with pytest.raises(openai.BadRequestError) as caught:
            await ask(server, gateway_id, "word " * 200)
        assert "limit" in caught.value.message
        assert fake_llm.requests == []

    async def test_truncate_drops_the_oldest_messages_and_keeps_the_last_user_message(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(
            server, fake_llm, systemInstruction="System rules.", contextMaximumSize=120,
            contextOverflowAction="Truncate",
        )
        history = []
        for n in range(10):
            history.append({"role": "user", "content": f"question {n} " + "x" * 60})
            history.append({"role": "assistant", "content": f"answer {n} " + "y" * 60})
        history.append({"role": "user", "content": "the last question"})
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
        await client.chat.completions.create(model=gateway_id, messages=history)
        await client.close()
        sent = fake_llm.requests[0].body["messages"]
        assert sent[0]["role"] == "system" and sent[0]["content"].startswith("System rules.")
        assert sent[-1] == {"role": "user", "content": "the last question"}
        assert len(sent) < len(history) + 1
        assert {"role": "user", "content": "question 0 " + "x" * 60} not in sent

    async def test_truncate_fails_when_the_last_message_alone_is_too_big(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm, contextMaximumSize=40, contextOverflowAction="Truncate")
        with pytest.raises(openai.BadRequestError) as caught:
            await ask(server, gateway_id, "z" * 1000)
        assert "too large" in caught.value.message


class TestShaping:
    async def test_flags_remove_parameters_and_move_the_system_instruction(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(
            server, fake_llm, systemInstruction="Rules.", temperature=0.5, stop="END", reasoningEffort="low",
            flags=["NoSystemInstruct", "NoTemperature", "NoStopParameter", "NoReasoningEffort"],
        )
        await ask(server, gateway_id, temperature=0.9)
        body = fake_llm.requests[0].body
        assert body["messages"][0]["role"] == "user" and body["messages"][0]["content"].startswith("Rules.")
        assert "temperature" not in body and "stop" not in body and "reasoning_effort" not in body

    async def test_gateway_parameters_are_sent_and_win_over_the_callers(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(
            server, fake_llm, temperature=0.2, presencePenalty=0.1, frequencyPenalty=0.3, stop="END",
            reasoningEffort="high",
        )
        await ask(server, gateway_id, temperature=0.9, seed=7)
        body = fake_llm.requests[0].body
        assert body["temperature"] == 0.2 and body["seed"] == 7
        assert body["presence_penalty"] == 0.1 and body["frequency_penalty"] == 0.3
        assert body["stop"] == "END" and body["reasoning_effort"] == "high"
        assert body["model"] == "fake-model"

    async def test_user_prompt_template_wraps_user_messages(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        gateway_id = await create_gateway(server, fake_llm, userPromptTemplate="<q>{prompt}</q>")
        await ask(server, gateway_id, "hello")
        assert fake_llm.requests[0].body["messages"][-1]["content"] == "<q>hello</q>"

    async def test_assistant_prefill_is_sent_and_included_in_the_answer(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(
            server, fake_llm, assistantPrefill="Certainly! ", includePrefillingInMessages=True
        )
        fake_llm.script(Reply(text="Here it is."))
        answer = await ask(server, gateway_id)
        assert fake_llm.requests[0].body["messages"][-1] == {"role": "assistant", "content": "Certainly! "}
        assert answer.choices[0].message.content == "Certainly! Here it is."

    async def test_tool_context_count_truncates_older_tool_responses(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(
            server, fake_llm, protocolFunctions=[weather_function(site)], toolContextCount=1
        )
        fake_llm.script(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "A"})]),
            Reply(tool_calls=[ToolCall("get_weather", {"city": "B"})]),
            Reply(text="Both sunny."),
        )
        await ask(server, gateway_id)
        tool_contents = [m["content"] for m in fake_llm.requests[2].body["messages"] if m["role"] == "tool"]
        assert tool_contents == ["[tool response truncated - call this tool again]", "Sunny, 24C"]

    async def test_instruction_sources_are_appended_and_cached(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        url = site.answer("/rules.txt", Answer(body="Never discuss prices."))
        gateway_id = await create_gateway(
            server, fake_llm, systemInstruction="Base.",
            systemInstructionsSources=[{"name": "rules", "url": url, "cacheDuration": 600}],
        )
        await ask(server, gateway_id)
        await ask(server, gateway_id)
        system = fake_llm.requests[0].body["messages"][0]["content"]
        assert system.startswith("Base.\n\nNever discuss prices.")
        assert "Current date and time:" in system
        assert len(site.received_at("/rules.txt")) == 1


class TestStreaming:
    async def test_text_after_a_tool_round_is_streamed(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[weather_function(site)])
        fake_llm.script(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]), Reply(text="Cold and clear in Oslo.")
        )
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
        stream = await client.chat.completions.create(
            model=gateway_id, messages=[{"role": "user", "content": "Oslo?"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
        await client.close()
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Cold and clear in Oslo."
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
        assert len(site.received_at("/tools/weather")) == 1

    async def test_an_error_before_the_first_token_is_a_plain_error_answer(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(status=401), Reply(status=401))
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model=gateway_id, messages=[{"role": "user", "content": "x"}], stream=True
            )
        await client.close()
        assert caught.value.status_code == 502
        assert "credentials" in caught.value.message

    async def test_a_client_that_goes_away_cancels_the_upstream_request(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(text=" ".join(["word"] * 200), chunk_delay=0.02))
        body = {"model": gateway_id, "messages": [{"role": "user", "content": "long"}], "stream": True}
        async with aiohttp.ClientSession() as http, http.post(server.url + "/v1/chat/completions", json=body,
                             headers=server.headers()) as response:
            assert response.status == 200
            await response.content.readline()  # the first chunk has arrived
        await fake_llm.wait_for_cancelled(1, timeout=5)
        assert fake_llm.cancelled == 1

    async def test_a_non_streaming_client_that_goes_away_cancels_the_upstream_request(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        gateway_id = await create_gateway(server, fake_llm)
        fake_llm.script(Reply(text="slow", delay=5))
        body = {"model": gateway_id, "messages": [{"role": "user", "content": "slow"}]}
        async with aiohttp.ClientSession() as http:
            request = asyncio.create_task(
                http.post(server.url + "/v1/chat/completions", json=body, headers=server.headers())
            )
            await fake_llm.wait_for_requests(1)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
        await fake_llm.wait_for_cancelled(1, timeout=5)
        assert fake_llm.cancelled == 1
