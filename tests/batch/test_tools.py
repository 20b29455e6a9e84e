"""A workflow's enabledTools: the built-in functions its items are offered, in place of the gateway's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.batch.helpers import BatchApi, Classifier, numbered
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer

CALENDAR = {"calendar_create", "calendar_search", "calendar_update", "calendar_delete"}
MEMORY = {"memory_save", "memory_search", "memory_update", "memory_remove"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"batch": {"poll_seconds": 0.05}}


@pytest.fixture
async def model() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=Classifier()) as fake:
        yield fake


async def offered(server: RunningServer, model: FakeLLM, gateway: str, **options: Any) -> set[str]:
    """The tool names the model was offered for one item of a workflow with these options."""
    api = BatchApi(server.call)
    await api.setup(gateway, options=options)
    before = len(model.requests)
    await api.load(numbered(1))
    await api.wait(lambda s: s["finished"] == 1)
    [request] = model.requests[before:]
    return {tool["function"]["name"] for tool in request.body.get("tools", [])}


async def test_the_workflows_functions_replace_the_gateways(server: RunningServer, model: FakeLLM) -> None:
    gateway = await create_gateway(server, model, sentinelOptions={"enabledFunctions": ["Remember"]})
    assert await offered(server, model, gateway, enabledTools={"enabledFunctions": ["Calendar"]}) == CALENDAR
    assert await offered(server, model, gateway, enabledTools={"enabledFunctions": []}) == set()
    assert await offered(server, model, gateway) == MEMORY  # unset: the gateway's own
    with_all = {"enabledFunctions": ["Remember"], "options": {"includeAllMemoryContext": True}}
    assert await offered(server, model, gateway, enabledTools=with_all) == MEMORY - {"memory_search"}


async def test_functions_batch_items_cannot_use_are_refused_by_name(server: RunningServer, model: FakeLLM) -> None:
    gateway = await create_gateway(server, model)
    body = {"modelName": gateway, "options": {"instruction": "x", "resultSchema": {"type": "object"}}}

    async def create(functions: list[Any]) -> tuple[int, Any]:
        options = {**body["options"], "enabledTools": {"enabledFunctions": functions}}
        return await server.call("POST", "/api/v1/batch/workflows", json={**body, "options": options})

    status, answer = await create(["Remember", "WebSearch", "Handoff"])
    assert status == 400 and "WebSearch, Handoff cannot run" in answer["message"], answer
    assert "options.enabledTools.enabledFunctions" in answer["message"]
    status, answer = await create(["Calendar", "Telepathy", 7])
    assert status == 400 and "unknown function Telepathy, 7" in answer["message"], answer
    status, answer = await server.call("POST", "/api/v1/batch/workflows", json=body)
    workflow = answer["id"]
    status, answer = await server.call("PATCH", f"/api/v1/batch/workflows/{workflow}",
                                       json={"options": {"enabledTools": {"enabledFunctions": ["Code"]}}})
    assert status == 400 and "Code cannot run" in answer["message"], answer
    _, stored = await server.call("GET", f"/api/v1/batch/workflows/{workflow}")
    assert stored["options"]["enabledTools"] is None
