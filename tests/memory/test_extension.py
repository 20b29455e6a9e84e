"""What the model sees: the tools a gateway enables and the memory block in the system prompt."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import openai
import pytest

from botline.domain.clock import FrozenClock
from botline.domain.memory import MemoryFormat
from botline.memory.extension import MORE_HINT
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.memory.helpers import (
    CALENDAR,
    CALENDAR_TOOLS,
    INCLUDE_ALL,
    MEMORY_TOOLS,
    REMEMBER,
    memory_client,
    new_session,
    offered,
    saved_id,
    say,
    seed,
    system_prompt,
    tool_results,
    use_tool,
)
from tests.support.server import RunningServer

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
INJECTED_LINE = re.compile(r"^- \[([0-9a-f-]{36})\] ", re.MULTILINE)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


async def seed_many(server: RunningServer, count: int, user: str = "user-1") -> list[str]:
    """`count` Text memories saved a minute apart; their ids, oldest first."""
    return [(await seed(server, user, f"fact number {i}", START - timedelta(minutes=count - i))).id
            for i in range(count)]


async def test_over_ten_memories_only_the_ten_most_recent_are_injected_and_search_finds_the_rest(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    ids = await seed_many(server, 12)
    key = await new_session(server, await memory_client(server, fake_llm), "user-1")
    await say(server, key, "Hi")
    request = fake_llm.requests[-1]
    assert INJECTED_LINE.findall(system_prompt(request)) == list(reversed(ids[2:]))
    assert MORE_HINT in system_prompt(request)
    assert offered(request) == MEMORY_TOOLS

    found = await use_tool(server, fake_llm, key, "memory_search", query="NUMBER 1")
    assert f"[{ids[1]}] fact number 1" in found and f"[{ids[11]}] fact number 11" in found
    assert found.index(ids[11]) < found.index(ids[1])  # most recent first
    assert f"[{ids[0]}] fact number 0" in await use_tool(server, fake_llm, key, "memory_search", query="number 0")


async def test_ten_memories_or_fewer_are_all_injected_without_the_hint(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    ids = await seed_many(server, 10)
    await say(server, await new_session(server, await memory_client(server, fake_llm), "user-1"), "Hi")
    prompt = system_prompt(fake_llm.requests[-1])
    assert INJECTED_LINE.findall(prompt) == list(reversed(ids)) and MORE_HINT not in prompt


async def test_include_all_injects_every_memory_and_offers_no_search(server: RunningServer, fake_llm: FakeLLM) -> None:
    ids = await seed_many(server, 14)
    await seed(server, "user-1", '{"title": "Dentist"}', START, format=MemoryFormat.DATE_REMINDER)
    await say(server, await new_session(server, await memory_client(server, fake_llm, **INCLUDE_ALL), "user-1"), "Hi")
    request = fake_llm.requests[-1]
    assert INJECTED_LINE.findall(system_prompt(request)) == list(reversed(ids))
    assert MORE_HINT not in system_prompt(request) and "Dentist" not in system_prompt(request)
    assert offered(request) == MEMORY_TOOLS - {"memory_search"}


async def test_no_block_when_the_user_has_no_memories(server: RunningServer, fake_llm: FakeLLM) -> None:
    await say(server, await new_session(server, await memory_client(server, fake_llm), "user-1"), "Hi")
    request = fake_llm.requests[-1]
    assert "<user_memories>" not in system_prompt(request) and offered(request) == MEMORY_TOOLS


async def test_a_multi_line_memory_stays_one_item(server: RunningServer, fake_llm: FakeLLM) -> None:
    memory = await seed(server, "user-1", "Children:\nAna (7)\nRui (4)", START)
    await say(server, await new_session(server, await memory_client(server, fake_llm), "user-1"), "Hi")
    assert f"- [{memory.id}] Children:\n  Ana (7)\n  Rui (4)\n" in system_prompt(fake_llm.requests[-1])


async def test_calendar_and_remember_are_enabled_independently(server: RunningServer, fake_llm: FakeLLM) -> None:
    await seed(server, "user-1", "Likes jazz", START)
    await say(server, await new_session(server, await memory_client(server, fake_llm, **CALENDAR), "user-1"), "Hi")
    assert offered(fake_llm.requests[-1]) == CALENDAR_TOOLS
    assert "Likes jazz" not in system_prompt(fake_llm.requests[-1])
    both = {"sentinelOptions": {"enabledFunctions": ["Remember", "Calendar"]}}
    await say(server, await new_session(server, await memory_client(server, fake_llm, **both), "user-1"), "Hi")
    assert offered(fake_llm.requests[-1]) == MEMORY_TOOLS | CALENDAR_TOOLS


async def test_chat_completions_with_user_remembers_across_calls(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm, **REMEMBER)
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    fake_llm.script(Reply(tool_calls=[ToolCall("memory_save", {"memoryData": "Prefers metric units"})]),
                    Reply(text="Noted."))
    answer = await client.chat.completions.create(
        model=gateway_id, messages=[{"role": "user", "content": "I use metric"}], user="api-user-7"
    )
    assert answer.choices[0].message.content == "Noted."
    memory_id = saved_id(tool_results(fake_llm.requests[-1])[-1])

    await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "Hi"}],
                                         user="api-user-7")
    assert f"- [{memory_id}] Prefers metric units" in system_prompt(fake_llm.requests[-1])

    fake_llm.script(Reply(tool_calls=[ToolCall("memory_search", {"query": "metric"})]), Reply(text="?"))
    await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "Hi"}])
    assert "Prefers metric" not in system_prompt(fake_llm.requests[-1])
    assert "can't be identified" in tool_results(fake_llm.requests[-1])[-1]
    await client.close()
