"""LangChain's ChatOpenAI, unmodified, against /v1 (issue 18 §4): answers, streams, tool calls, usage."""

from __future__ import annotations

from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.server import ADMIN_KEY, RunningServer


def chat(server: RunningServer, gateway_id: str, **extra: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.url + "/v1", api_key=ADMIN_KEY, model=gateway_id,  # type: ignore[arg-type]
                      max_retries=0, **extra)


async def test_an_answer_with_its_usage(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="Paris.", prompt_tokens=12, completion_tokens=3))

    answer = await chat(server, gateway_id).ainvoke("Capital of France?")

    assert answer.content == "Paris."
    assert answer.usage_metadata is not None
    assert (answer.usage_metadata["input_tokens"], answer.usage_metadata["output_tokens"]) == (12, 3)


async def test_a_stream_arrives_in_pieces_and_ends_with_usage(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="one two three four", prompt_tokens=9, completion_tokens=4,
                          chunk_delay=0.01))  # what arrives together is sent together

    chunks: list[AIMessageChunk] = [c async for c in chat(server, gateway_id, stream_usage=True).astream("count")]

    assert len([c for c in chunks if c.content]) > 1
    assert "".join(str(c.content) for c in chunks) == "one two three four"
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert [(u["input_tokens"], u["output_tokens"]) for u in usage] == [(9, 4)]


async def test_a_tool_call_reaches_the_app_with_its_arguments(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(tool_calls=[ToolCall("open_door", {"door": "front"}, id="call_door")]))
    open_door = {"type": "function", "function": {
        "name": "open_door", "description": "Opens a door",
        "parameters": {"type": "object", "properties": {"door": {"type": "string"}}, "required": ["door"]}}}

    answer = await chat(server, gateway_id).bind_tools([open_door]).ainvoke("Open the front door")

    assert answer.tool_calls == [{"name": "open_door", "args": {"door": "front"}, "id": "call_door",
                                  "type": "tool_call"}]
    assert [t["function"]["name"] for t in fake_llm.requests[0].body["tools"]] == ["open_door"]
