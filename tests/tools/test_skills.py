"""Skills in real turns: the model sees the list, `read_skill` loads a skill's instructions (and its
instruction sources) into the next round only, the skill stays active for the session, and with
hideToolsWithoutSkill a tool shows only while a skill that allows it is active."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.memory.helpers import REMEMBER, new_session, offered, say, system_prompt, tool_results
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer
from tests.support.webchat import create_client


@pytest.fixture
async def site() -> AsyncIterator[CallbackServer]:
    async with CallbackServer() as server:
        yield server


async def new_skill(server: RunningServer, slug: str, instructions: str, **options: Any) -> str:
    body = {"slug": slug, "description": f"How to {slug}", "instructions": instructions, "options": options}
    status, answer = await server.call("POST", "/api/v1/skills", json=body)
    assert status == 200, answer
    return str(answer["id"])


def read(*slugs: str) -> Reply:
    return Reply(tool_calls=[ToolCall("read_skill", {"skills": list(slugs)})])


async def test_a_read_skill_is_in_the_next_round_only_and_stays_for_the_session(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    guide = site.answer("/style.md", Answer(body="Always cite the style guide."))
    writer = await new_skill(server, "writer", "Write in short sentences.", instructionSources=[
        {"name": "style guide", "url": guide, "cacheDuration": 600}])
    tutor = await new_skill(server, "tutor", "Explain step by step.")
    client = await create_client(server, fake_llm, gateway={"skills": [writer, tutor]})
    key = await new_session(server, client, "user-1")

    fake_llm.script(read("writer"), Reply(text="Done."))
    await say(server, key, "Write me something")
    first, second = fake_llm.requests[-2:]
    assert "- writer: How to writer" in system_prompt(first) and "- tutor: How to tutor" in system_prompt(first)
    assert "<activated_skill slug=" not in system_prompt(first)
    assert "read_skill" in offered(first)
    loaded = system_prompt(second)
    assert '<activated_skill slug="writer">\nWrite in short sentences.\nAlways cite the style guide.\n' in loaded
    assert "Explain step by step." not in loaded
    assert tool_results(second) == ["Loaded: writer. Their instructions are in your system instructions."]

    await say(server, key, "And now?")  # a later turn of the same session: still active
    assert "Write in short sentences." in system_prompt(fake_llm.requests[-1])
    assert len(site.received_at("/style.md")) == 1  # cached for its cacheDuration

    fake_llm.script(read("tutor", "nope"), Reply(text="Switched."))
    await say(server, key, "Teach me")
    switched = system_prompt(fake_llm.requests[-1])
    assert "Explain step by step." in switched and "Write in short sentences." not in switched
    assert "Unknown (ignored): nope." in tool_results(fake_llm.requests[-1])[-1]

    fresh = await new_session(server, client, "user-2")
    await say(server, fresh, "Hi")
    assert "<activated_skill slug=" not in system_prompt(fake_llm.requests[-1])


async def test_an_unknown_skill_changes_nothing_and_says_which_exist(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    writer = await new_skill(server, "writer", "Write in short sentences.")
    key = await new_session(server, await create_client(server, fake_llm, gateway={"skills": [writer]}), "u")
    fake_llm.script(read("painter"), Reply(text="Sorry."))
    await say(server, key, "Paint")
    assert tool_results(fake_llm.requests[-1]) == ["No such skill. The skills are: writer."]
    assert "<activated_skill slug=" not in system_prompt(fake_llm.requests[-1])


async def test_hidden_tools_appear_only_after_the_skill_that_allows_them(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    keeper = await new_skill(server, "keeper", "Save what matters.", allowedToolsNames=["memory_save"])
    other = await new_skill(server, "other", "Nothing.")
    gateway = {**REMEMBER, "skills": [keeper, other], "hideToolsWithoutSkill": True,
               "alwaysVisibleTools": ["memory_search"]}
    key = await new_session(server, await create_client(server, fake_llm, gateway=gateway), "user-1")

    fake_llm.script(Reply(tool_calls=[ToolCall("memory_save", {"memoryData": "sneaky"})]), read("other"),
                    read("keeper"), Reply(text="Ready."))
    await say(server, key, "Remember I like tea")
    hidden, refused, after_other, after_keeper = fake_llm.requests[-4:]
    assert offered(hidden) == {"read_skill", "memory_search"}
    assert tool_results(refused) == ["There is no tool named memory_save."]  # hidden: not run
    assert offered(after_other) == {"read_skill", "memory_search"}
    assert offered(after_keeper) == {"read_skill", "memory_search", "memory_save"}


async def test_hide_without_skills_leaves_only_the_always_visible_tools(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway = {**REMEMBER, "hideToolsWithoutSkill": True, "alwaysVisibleTools": ["memory_search"]}
    key = await new_session(server, await create_client(server, fake_llm, gateway=gateway), "user-1")
    await say(server, key, "Hi")
    assert offered(fake_llm.requests[-1]) == {"memory_search"}
    assert "<available_skills>" not in system_prompt(fake_llm.requests[-1])


async def test_v1_chat_completions_reads_skills_within_one_request(server: RunningServer, fake_llm: FakeLLM) -> None:
    writer = await new_skill(server, "writer", "Write in short sentences.")
    gateway_id = await create_gateway(server, fake_llm, skills=[writer])
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    fake_llm.script(read("writer"), Reply(text="Short."))
    answer = await client.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "Short."
    assert "Write in short sentences." in system_prompt(fake_llm.requests[-1])
