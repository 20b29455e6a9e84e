"""The memory tools end to end: the fake model calls them in web-chat turns; the system prompts of
later turns show the effect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from botline.domain.clock import FrozenClock
from botline.memory.service import MemoryService
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.memory.helpers import (
    MEMORY_TOOLS,
    REMEMBER,
    admin_id,
    memory_client,
    new_session,
    offered,
    saved_id,
    say,
    seed,
    store_of,
    system_prompt,
    tool_results,
    use_tool,
)
from tests.support.server import RunningServer

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


async def test_a_saved_memory_is_in_a_new_sessions_prompt_for_the_same_tag_only(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    client_id = await memory_client(server, fake_llm)
    first = await new_session(server, client_id, "user-1")
    result = await use_tool(server, fake_llm, first, "memory_save", memoryData="Favourite colour: green")
    memory_id = saved_id(result)
    assert result.startswith("Saved memory") and "2026-12-25" in result  # 30 days by default

    await say(server, await new_session(server, client_id, "user-1"), "Hello again")
    assert f"- [{memory_id}] Favourite colour: green" in system_prompt(fake_llm.requests[-1])

    await say(server, await new_session(server, client_id, "user-2"), "Hello")
    assert "Favourite colour" not in system_prompt(fake_llm.requests[-1])
    assert "<user_memories>" not in system_prompt(fake_llm.requests[-1])


async def test_update_and_remove_change_the_next_turns_prompt(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await memory_client(server, fake_llm)
    key = await new_session(server, client_id, "user-1")
    memory_id = saved_id(await use_tool(server, fake_llm, key, "memory_save", memoryData="Lives in Porto"))

    result = await use_tool(server, fake_llm, key, "memory_update", memoryId=memory_id, memoryData="Lives in Lisbon",
                            retentionDays=365)
    assert result == f"Updated memory [{memory_id}] (kept until 2027-11-25)."
    await say(server, key, "Where do I live?")
    prompt = system_prompt(fake_llm.requests[-1])
    assert f"- [{memory_id}] Lives in Lisbon" in prompt and "Porto" not in prompt

    removed = await use_tool(server, fake_llm, key, "memory_remove", memoryId=memory_id)
    assert removed == f"Removed memory [{memory_id}]."
    await say(server, key, "And now?")
    assert "Lisbon" not in system_prompt(fake_llm.requests[-1])
    assert "no memory with id" in await use_tool(server, fake_llm, key, "memory_remove", memoryId=memory_id)


async def test_another_users_memory_ids_are_not_found(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await memory_client(server, fake_llm)
    theirs = saved_id(await use_tool(server, fake_llm, await new_session(server, client_id, "user-2"), "memory_save",
                                     memoryData="Secret plan"))
    mine = await new_session(server, client_id, "user-1")
    for tool, arguments in [
        ("memory_update", {"memoryId": theirs, "memoryData": "hijacked"}),
        ("memory_remove", {"memoryId": theirs}),
    ]:
        assert "There is no memory with id" in await use_tool(server, fake_llm, mine, tool, **arguments)
    assert "No saved memory matches" in await use_tool(server, fake_llm, mine, "memory_search", query="plan")
    status, kept = await server.call("GET", f"/api/v1/memories/{theirs}")
    assert status == 200 and kept["content"] == "Secret plan"


async def test_without_a_tag_every_tool_says_the_user_cannot_be_identified(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await new_session(server, await memory_client(server, fake_llm))
    for tool, arguments in [
        ("memory_save", {"memoryData": "x"}), ("memory_search", {"query": "x"}),
        ("memory_update", {"memoryId": "m", "memoryData": "x"}), ("memory_remove", {"memoryId": "m"}),
    ]:
        assert "can't be identified" in await use_tool(server, fake_llm, key, tool, **arguments)
    assert await server.call("GET", "/api/v1/memories") == (200, [])


async def test_bad_arguments_come_back_as_text_and_save_nothing(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await new_session(server, await memory_client(server, fake_llm), "user-1")
    too_long = "é" * 5121  # 10,242 bytes of UTF-8
    cases = [
        ({"memoryData": too_long}, "10240 bytes"),
        ({"memoryData": "x", "retentionDays": 0}, "between 1 and 365"),
        ({"memoryData": "x", "retentionDays": 366}, "between 1 and 365"),
        ({"memoryData": "   "}, "must not be empty"),
        ({"memoryData": 42}, "memoryData"),
        ({}, "memoryData: Field required"),
    ]
    for arguments, expected in cases:
        result = await use_tool(server, fake_llm, key, "memory_save", **arguments)
        assert expected in result, (arguments, result)
    fake_llm.script(Reply(tool_calls=[ToolCall("memory_save", "{not json")]), Reply(text="ok"))
    await say(server, key, "broken")
    assert "not valid JSON" in tool_results(fake_llm.requests[-1])[-1]
    exactly = "a" * 10240
    assert saved_id(await use_tool(server, fake_llm, key, "memory_save", memoryData=exactly))
    _, listed = await server.call("GET", "/api/v1/memories")
    assert len(listed) == 1


async def test_remember_off_offers_no_memory_tools_and_injects_nothing(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    await seed(server, "user-1", "Likes jazz", START)
    key = await new_session(server, await memory_client(server, fake_llm, systemInstruction="Plain bot."), "user-1")
    await say(server, key, "Hi")
    request = fake_llm.requests[-1]
    assert "tools" not in request.body and offered(request) == set()
    assert "Likes jazz" not in system_prompt(request)

    key = await new_session(server, await memory_client(server, fake_llm, **REMEMBER), "user-1")
    await say(server, key, "Hi")
    assert offered(fake_llm.requests[-1]) == MEMORY_TOOLS
    assert "Likes jazz" in system_prompt(fake_llm.requests[-1])


async def test_expired_memories_are_not_injected_searched_or_listed_and_are_purged(
    server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock
) -> None:
    client_id = await memory_client(server, fake_llm)
    key = await new_session(server, client_id, "user-1")
    short = saved_id(await use_tool(server, fake_llm, key, "memory_save", memoryData="Parked on level 2",
                                    retentionDays=1))
    await use_tool(server, fake_llm, key, "memory_save", memoryData="Allergic to nuts")

    clock.advance(timedelta(days=1, minutes=1))
    key = await new_session(server, client_id, "user-1")
    await say(server, key, "Hi")
    prompt = system_prompt(fake_llm.requests[-1])
    assert "Allergic to nuts" in prompt and "Parked" not in prompt
    assert "No saved memory matches" in await use_tool(server, fake_llm, key, "memory_search", query="parked")
    assert (await server.call("GET", f"/api/v1/memories/{short}"))[0] == 404
    _, listed = await server.call("GET", "/api/v1/memories")
    assert [m["content"] for m in listed] == ["Allergic to nuts"]

    store, owner = store_of(server), await admin_id(server)
    assert short in {m.id for m in await store.memories.list_for_user(owner, "user-1", now=START)}  # until purged
    assert await MemoryService(store, clock).purge_once() == 1
    assert short not in {m.id for m in await store.memories.list_for_user(owner, "user-1", now=START)}
