"""A reasoning model's thinking, governed by the gateway's reasoning flags (docs/decisions.md, "Reasoning"):
shown on /v1 and in the web chat, filtered by kind, stored, and sent back to the model."""

from __future__ import annotations

from typing import Any

import openai

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public, sse_events

SUMMARY = {"type": "reasoning.summary", "summary": "Compared the two cities."}
DETAIL = {"type": "reasoning.text", "text": "Paris has 2.1M people; Lyon 0.5M."}
SECRET = {"type": "reasoning.encrypted", "data": "gAAAA..."}


def sdk(server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)


def thinking_of(holder: Any) -> Any:
    return (holder.model_extra or {}).get("reasoning_content")


async def ask(server: RunningServer, model: str, messages: list[dict[str, Any]] | None = None) -> Any:
    client = sdk(server)
    try:
        answer = await client.chat.completions.create(
            model=model, messages=messages or [{"role": "user", "content": "Which is bigger?"}]
        )
    finally:
        await client.close()
    return answer.choices[0].message


async def test_v1_returns_thinking_only_when_a_flag_shows_it(server: RunningServer, fake_llm: FakeLLM) -> None:
    hidden = await create_gateway(server, fake_llm, name="Plain")
    shown = await create_gateway(server, fake_llm, name="Thinker", flags=["ReturnReasoningTokens"])
    fake_llm.script(*(Reply(text="Paris.", reasoning="Let me compare.") for _ in range(2)))
    plain = await ask(server, hidden)
    assert plain.content == "Paris." and thinking_of(plain) is None
    thinker = await ask(server, shown)
    assert thinker.content == "Paris." and thinking_of(thinker) == "Let me compare."


async def test_v1_streams_thinking_before_the_answer(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, flags=["ThinkingProcess"])
    fake_llm.script(Reply(text="Paris is bigger.", reasoning="Paris has more people.", chunk_delay=0.005))
    client = sdk(server)
    stream = await client.chat.completions.create(
        model=gateway_id, messages=[{"role": "user", "content": "Which is bigger?"}], stream=True,
    )
    order: list[tuple[str, str]] = []
    async for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is not None and thinking_of(delta):
            order.append(("thinking", thinking_of(delta)))
        if delta is not None and delta.content:
            order.append(("text", delta.content))
    await client.close()
    assert "".join(text for kind, text in order if kind == "thinking") == "Paris has more people."
    assert "".join(text for kind, text in order if kind == "text") == "Paris is bigger."
    assert order[0][0] == "thinking" and order[-1][0] == "text"


async def test_summary_and_detail_flags_pick_the_kinds_of_thinking(server: RunningServer, fake_llm: FakeLLM) -> None:
    both = await create_gateway(server, fake_llm, name="Both", flags=["ReturnReasoningTokens"])
    no_summary = await create_gateway(server, fake_llm, name="Details only",
                                      flags=["ReturnReasoningTokens", "DisableReasoningSummary"])
    no_details = await create_gateway(server, fake_llm, name="Summary only",
                                      flags=["ReturnReasoningTokens", "DisableReasoningDetails"])
    entries = [SUMMARY, DETAIL, SECRET]
    fake_llm.script(*(Reply(text="Paris.", reasoning_details=entries) for _ in range(3)))
    assert thinking_of(await ask(server, both)) == SUMMARY["summary"] + DETAIL["text"]  # not twice, no ciphertext
    assert thinking_of(await ask(server, no_summary)) == DETAIL["text"]
    assert thinking_of(await ask(server, no_details)) == SUMMARY["summary"]
    fake_llm.script(Reply(text="Paris.", reasoning="flat thoughts"))
    assert thinking_of(await ask(server, no_details)) is None  # reasoning_content is the full thinking


async def test_a_callers_earlier_thinking_goes_upstream_only_with_include_stored_reasoning(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello.", "reasoning_content": "They greet me."},
               {"role": "user", "content": "Which is bigger?"}]
    dropped = await create_gateway(server, fake_llm, name="Drops")
    kept = await create_gateway(server, fake_llm, name="Keeps", flags=["IncludeStoredReasoning"])
    await ask(server, dropped, history)
    assert fake_llm.requests[-1].body["messages"][2] == {"role": "assistant", "content": "Hello."}
    await ask(server, kept, history)
    assert fake_llm.requests[-1].body["messages"][2]["reasoning_content"] == "They greet me."


async def test_preserve_thinking_tokens_sends_each_rounds_thinking_back_in_the_tool_loop(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        function = {"name": "city_size", "description": "Population of a city.",
                    "callbackUrl": site.answer("/size", Answer(body="2.1M")),
                    "contentFormat": {"type": "object", "properties": {"city": {"type": "string"}}}}
        for flags, expected in (([], None), (["PreserveThinkingTokens"], "I need the size.")):
            gateway_id = await create_gateway(server, fake_llm, name=f"Tools {flags}", flags=flags,
                                              protocolFunctions=[function])
            fake_llm.script(Reply(tool_calls=[ToolCall("city_size", {"city": "Paris"})], reasoning="I need the size."),
                            Reply(text="2.1M people."))
            assert (await ask(server, gateway_id)).content == "2.1M people."
            tool_round = fake_llm.requests[-1].body["messages"][-2]
            assert tool_round["tool_calls"] and tool_round.get("reasoning_content") == expected


async def chat_key(server: RunningServer, fake: FakeLLM, flags: list[str]) -> str:
    client_id = await create_client(server, fake, gateway={"flags": flags})
    return str((await open_session(server, client_id))["accessKey"])


async def stream_prompt(server: RunningServer, key: str, text: str) -> list[tuple[str, Any]]:
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt(text)) as response:
        return [event async for event in sse_events(response)]


async def test_web_chat_streams_thinking_with_thinking_process(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat_key(server, fake_llm, ["ThinkingProcess"])
    fake_llm.script(Reply(text="Paris.", reasoning="Comparing populations."))
    events = await stream_prompt(server, key, "Which is bigger?")
    names = [name for name, _ in events]
    assert names.index("reasoning") < names.index("delta") and names[-1] == "done"
    assert "".join(data["text"] for name, data in events if name == "reasoning") == "Comparing populations."
    assert events[-1][1]["reasoning"] == "Comparing populations."
    _, info = await server.call("GET", public(key))
    assert "reasoning" not in info["messages"][-1]  # shown while it streamed, not stored without a keep flag


async def test_web_chat_hides_thinking_without_a_flag(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat_key(server, fake_llm, [])
    fake_llm.script(Reply(text="Paris.", reasoning="Comparing populations."))
    events = await stream_prompt(server, key, "Which is bigger?")
    assert [name for name, _ in events] == ["delta", "done"] and events[-1][1]["reasoning"] is None


async def test_stored_thinking_is_shown_on_reload_and_sent_back_next_turn(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await chat_key(server, fake_llm, ["ThinkingProcess", "IncludeStoredReasoning"])
    fake_llm.script(Reply(text="Paris.", reasoning="Comparing populations."), Reply(text="Lyon."))
    await stream_prompt(server, key, "Which is bigger?")
    _, info = await server.call("GET", public(key))
    assert info["messages"][-1]["reasoning"] == "Comparing populations."
    await stream_prompt(server, key, "And the smaller?")
    sent = fake_llm.requests[-1].body["messages"]
    assert {"role": "assistant", "content": "Paris.", "reasoning_content": "Comparing populations."} in sent


async def test_kept_but_hidden_thinking_is_never_shown(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat_key(server, fake_llm, ["PreserveThinkingTokens"])
    fake_llm.script(Reply(text="Paris.", reasoning="Comparing populations."), Reply(text="Lyon."))
    events = await stream_prompt(server, key, "Which is bigger?")
    assert "reasoning" not in [name for name, _ in events]
    _, info = await server.call("GET", public(key))
    assert "reasoning" not in info["messages"][-1]
    await stream_prompt(server, key, "And the smaller?")  # stored, but later turns get it only when included
    assert all("reasoning_content" not in m for m in fake_llm.requests[-1].body["messages"])
