"""MCP sources in real turns: the fake model calls an MCP tool, the MCP server (the SDK's own) gets the
arguments and `_meta`, and a dead, slow or failing server costs only that tool call. What results
become: text, images shown to the model in the next round and sent to the person, notices."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import pytest

from tests.emulators.fake_llm import FakeLLM, RecordedRequest, Reply, ToolCall
from tests.memory.helpers import admin_id, new_session, offered, say, store_of, tool_results
from tests.support.server import RunningServer, free_port
from tests.support.webchat import create_client, public
from tests.tools.mcp_server import PICTURE, McpTestServer

CALL_TIMEOUT = 0.5


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"tools": {"mcp_call_timeout_seconds": CALL_TIMEOUT, "mcp_list_timeout_seconds": 2,
                      "tool_output_max_chars": 1000, "mcp_image_max_bytes": 1024}}


@pytest.fixture
async def mcp_server() -> AsyncIterator[McpTestServer]:
    async with McpTestServer() as server:
        yield server


async def chat(server: RunningServer, fake: FakeLLM, *sources: dict[str, Any], **gateway: Any) -> str:
    client = await create_client(server, fake, gateway={"mcpSources": list(sources), **gateway})
    return await new_session(server, client, "user-1")


def source(url: str, name: str = "calc") -> dict[str, Any]:
    return {"name": name, "url": url, "cacheDuration": 600}


async def test_the_model_calls_an_mcp_tool_with_arguments_and_meta(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__add", {"a": 2, "b": 3})]), Reply(text="It is 5."))
    await say(server, key, "2+3?")
    assert {"calc__add", "calc__slow", "calc__broken", "calc__picture"} <= offered(fake_llm.requests[0])
    assert tool_results(fake_llm.requests[-1]) == ["5"]
    [call] = mcp_server.calls
    assert call.arguments == {"a": 2, "b": 3}
    meta = call.meta
    assert meta["_aiv_external_user_id"] == "user-1" and meta["_aiv_call_source"] == "WebChatClient"
    assert meta["_aiv_conversation_token"] and meta["_aiv_moment"].endswith("+00:00")
    account = await store_of(server).accounts.get(await admin_id(server))
    assert account is not None
    assert bcrypt.checkpw(account.salt.encode(), meta["_aiv_nonce"].encode())


async def test_two_servers_tools_do_not_collide(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    async with McpTestServer() as other:
        key = await chat(server, fake_llm, source(mcp_server.url, "one"), source(other.url, "two"))
        fake_llm.script(Reply(tool_calls=[ToolCall("two__add", {"a": 1, "b": 1})]), Reply(text="2"))
        await say(server, key, "1+1")
        assert {"one__add", "two__add"} <= offered(fake_llm.requests[0])
        assert [c.tool for c in other.calls] == ["add"] and mcp_server.calls == []


async def test_a_dead_server_is_left_out_and_the_turn_answers(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm, source(f"http://127.0.0.1:{free_port()}/mcp"))
    fake_llm.script(Reply(text="Hello."))
    await say(server, key, "Hi")
    assert not any(name.startswith("calc__") for name in offered(fake_llm.requests[-1]))


async def test_a_server_gone_after_listing_gives_a_tool_error(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    await say(server, key, "Hi")  # lists (and caches) the tools
    await mcp_server.stop()
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__add", {"a": 1, "b": 2})]), Reply(text="Sorry."))
    await say(server, key, "1+2?")
    [result] = tool_results(fake_llm.requests[-1])
    assert "calc__add is unavailable right now" in result


async def test_a_slow_tool_times_out_and_the_turn_goes_on(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__slow", {})]), Reply(text="It was slow."))
    started = time.monotonic()
    await say(server, key, "Go")
    assert time.monotonic() - started < CALL_TIMEOUT + 2
    assert "unavailable right now (timed out)" in tool_results(fake_llm.requests[-1])[0]
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__add", {"a": 1, "b": 1})]), Reply(text="2"))
    await say(server, key, "1+1")  # the source works again for the next call
    assert tool_results(fake_llm.requests[-1])[-1] == "2"


async def test_errors_audio_resources_and_long_output_are_bounded_text(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__broken", {}), ToolCall("calc__voice", {}),
                                      ToolCall("calc__flood", {"size": 5000})]), Reply(text="Done."))
    answer = await say(server, key, "Try them")
    broken, voice, flood = tool_results(fake_llm.requests[-1])
    assert broken.startswith("The tool reported an error:") and "on fire" in broken
    assert voice == "[the tool returned audio/wav audio, which is not passed on]\nfile:///notes.txt:\nMeeting notes."
    assert len(flood) < 1100 and flood.endswith("[cut: the tool's output passed 1000 characters]")
    assert image_parts(fake_llm.requests[-1]) == [] and answer["media"] == []


def image_parts(request: RecordedRequest) -> list[str]:
    """The data: URLs of the image parts the model received."""
    return [part["image_url"]["url"] for message in request.body["messages"] if isinstance(message["content"], list)
            for part in message["content"] if part.get("type") == "image_url"]


PICTURE_URL = "data:image/png;base64," + base64.b64encode(PICTURE).decode()


async def test_an_image_result_reaches_the_model_in_the_next_round_and_the_person_with_the_answer(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url))
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__picture", {})]), Reply(text="It is a grey square."))
    answer = await say(server, key, "Draw me something")
    first, second = fake_llm.requests[-2:]
    assert image_parts(first) == []
    [told] = tool_results(second)
    assert told == ("A grey square.\n[image calc__picture-1.png (image/png, 1 KB): shown to you after the tool "
                    "results; sent to the user with your answer; do not repeat or link it]")
    *_, tool_message, shown = second.body["messages"]
    assert tool_message["role"] == "tool" and shown["role"] == "user"
    assert shown["content"][1:] == [{"type": "text", "text": "calc__picture-1.png from calc__picture:"},
                                    {"type": "image_url", "image_url": {"url": PICTURE_URL}}]
    assert answer["completionText"] == "It is a grey square."
    [kept] = answer["media"]  # kept with the answer, served under the session's key
    assert (kept["kind"], kept["fileName"], kept["contentType"]) == ("image", "calc__picture-1.png", "image/png")
    async with server.http.get(server.url + public(key, f"/media/{kept['id']}")) as response:
        assert response.status == 200
        assert base64.b64encode(await response.read()).decode() == PICTURE_URL.split(",", 1)[1]
    fake_llm.script(Reply(text="Still grey."))
    await say(server, key, "And now?")  # the image was for that turn; the stored conversation keeps the text
    assert image_parts(fake_llm.requests[-1]) == [] and told in tool_results(fake_llm.requests[-1])


async def test_a_text_only_gateway_gets_a_notice_and_the_person_still_gets_the_image(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url), flags=["DisableMultiModalInput"])
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__picture", {})]), Reply(text="Here it is."))
    answer = await say(server, key, "Draw me something")
    [told] = tool_results(fake_llm.requests[-1])
    assert "not shown to you: this assistant cannot see images; sent to the user with your answer" in told
    assert image_parts(fake_llm.requests[-1]) == []
    assert [item["fileName"] for item in answer["media"]] == ["calc__picture-1.png"]


async def test_images_for_the_assistant_only_and_images_that_cannot_pass(
    server: RunningServer, fake_llm: FakeLLM, mcp_server: McpTestServer
) -> None:
    key = await chat(server, fake_llm, source(mcp_server.url), enabledMultimodalFeatures=["Image"])
    fake_llm.script(Reply(tool_calls=[ToolCall("calc__odd_pictures", {})]), Reply(text="Seen."))
    answer = await say(server, key, "Look")
    [told] = tool_results(fake_llm.requests[-1])
    assert told.split("\n") == [
        "[image calc__odd_pictures-1.png (image/png, 1 KB): shown to you after the tool results]",
        "[the tool returned image/png image content, which is not a PNG, JPEG, GIF or WebP image]",
        "[the tool returned an image (image/png) larger than the 1 KB passed on]",
    ]
    assert image_parts(fake_llm.requests[-1]) == [PICTURE_URL]
    assert answer["media"] == []  # for the assistant only: the person is not sent it
