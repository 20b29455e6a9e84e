"""Helpers for memory tests: a chat client on a gateway with memory, turns, and reading what the fake saw."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from botline.accounts import admin_account
from botline.app import STORE
from botline.domain.memory import Memory, MemoryFormat
from botline.store.base import Store
from tests.emulators.fake_llm import FakeLLM, RecordedRequest, Reply, ToolCall
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

REMEMBER = {"sentinelOptions": {"enabledFunctions": ["Remember"]}}
CALENDAR = {"sentinelOptions": {"enabledFunctions": ["Calendar"]}}
INCLUDE_ALL = {**REMEMBER, "builtinFunctionsOptions": {"includeAllMemoryContext": True}}
MEMORY_TOOLS = {"memory_save", "memory_update", "memory_search", "memory_remove"}
CALENDAR_TOOLS = {"calendar_create", "calendar_search", "calendar_update", "calendar_delete"}
SAVED_ID = re.compile(r"\[([0-9a-f-]{36})\]")


def store_of(server: RunningServer) -> Store:
    assert server.app is not None
    return server.app[STORE]


async def admin_id(server: RunningServer) -> str:
    return (await admin_account(store_of(server))).id


async def memory_client(server: RunningServer, fake: FakeLLM, **gateway: Any) -> str:
    return await create_client(server, fake, gateway=gateway or REMEMBER)


async def new_session(server: RunningServer, client_id: str, tag: str | None = None) -> str:
    """A fresh session's access key (any live session of the tag is deleted first)."""
    body = {"tag": tag} if tag else {}
    opened = await open_session(server, client_id, **body)
    if tag:
        status, _ = await server.call("DELETE", f"/api/v1/web-chat-client/{client_id}/sessions/{opened['sessionId']}")
        assert status == 200
        fresh = await open_session(server, client_id, **body)
        assert fresh["sessionId"] != opened["sessionId"]
        opened = fresh
    return str(opened["accessKey"])


async def say(server: RunningServer, key: str, text: str) -> dict[str, Any]:
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt(text))
    assert status == 200, answer
    return dict(answer)


def call(tool: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[ToolCall(tool, arguments)])


async def use_tool(server: RunningServer, fake: FakeLLM, key: str, tool: str, **arguments: Any) -> str:
    """One turn in which the model calls `tool`; returns the text the tool gave the model."""
    fake.script(call(tool, **arguments), Reply(text="Done."))
    await say(server, key, f"please use {tool}")
    return tool_results(fake.requests[-1])[-1]


def tool_results(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m.get("role") == "tool"]


def system_prompt(request: RecordedRequest) -> str:
    first = request.body["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


def offered(request: RecordedRequest) -> set[str]:
    return {tool["function"]["name"] for tool in request.body.get("tools", [])}


def saved_id(result: str) -> str:
    found = SAVED_ID.search(result)
    assert found, result
    return found.group(1)


async def seed(
    server: RunningServer, user: str, content: str, at: datetime, *, days: int = 30,
    format: MemoryFormat = MemoryFormat.TEXT, account_id: str | None = None,
) -> Memory:
    """Stores a memory directly (as if saved at `at`), for tests that need many or precise times."""
    store = store_of(server)
    owner = account_id or await admin_id(server)
    memory = Memory(account_id=owner, external_user_id=user, format=format, content=content, created_at=at,
                    updated_at=at, expires_at=at + timedelta(days=days))
    await store.memories.create(memory)
    return memory
