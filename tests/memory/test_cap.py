"""L8 end to end: with `memory.max_per_user` reached, memory_save tells the model what to do instead, and
the next turn's prompt still shows the memories that were kept."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulators.fake_llm import FakeLLM
from tests.memory.helpers import memory_client, new_session, saved_id, say, system_prompt, use_tool
from tests.support.server import RunningServer

CAP = 2


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"memory": {"max_per_user": CAP}}


async def test_l8_memory_save_at_the_cap_tells_the_model_to_remove_or_update_one(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    client_id = await memory_client(server, fake_llm)
    key = await new_session(server, client_id, "user-1")
    kept = [saved_id(await use_tool(server, fake_llm, key, "memory_save", memoryData=f"Fact {i}")) for i in range(CAP)]

    refused = await use_tool(server, fake_llm, key, "memory_save", memoryData="One fact too many")
    assert refused.startswith("memory_save did nothing: this user already has 2 saved memories")
    assert "Remove one" in refused

    key = await new_session(server, client_id, "user-1")
    await say(server, key, "Hello again")
    prompt = system_prompt(fake_llm.requests[-1])
    assert all(memory_id in prompt for memory_id in kept) and "One fact too many" not in prompt

    removed = await use_tool(server, fake_llm, key, "memory_remove", memoryId=kept[0])
    assert removed.startswith("Removed memory")
    assert (await use_tool(server, fake_llm, key, "memory_save", memoryData="Room again")).startswith("Saved memory")
