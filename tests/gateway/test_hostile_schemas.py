"""M1 for JSON Schemas: a tenant's tool schema is applied to arguments an anonymous chat user can steer,
so its regexes run on RE2 (linear time) and what RE2 cannot compile is refused when saved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import create_gateway, gateway_body
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.gateway.test_pipeline import ask
from tests.support.callback_server import Answer, CallbackServer
from tests.support.loop_watch import HEALTHZ_BUDGET_SECONDS, collector_as_botline_serve_sets_it, slowest_healthz_during
from tests.support.server import RunningServer

__all__ = ["collector_as_botline_serve_sets_it"]  # autouse: collect garbage as `botline serve` does

CATASTROPHIC = "^(a+)+$"
"""Exponential on a backtracking engine: 40 `a`s and a `!` is about 2**40 steps for Python's `re`."""


@pytest.fixture
async def site() -> AsyncIterator[CallbackServer]:
    async with CallbackServer() as server:
        yield server


def lookup(site: CallbackServer | None, content_format: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "lookup_code",
        "description": "Looks a voucher code up.",
        "callbackUrl": site.answer("/code", Answer(body="valid")) if site else "https://tools.example/code",
        "contentFormat": content_format,
    }


@pytest.mark.timeout(20)  # SIGALRM interrupts `re` (it checks signals): the old code fails here, not hangs
async def test_m1_a_catastrophic_pattern_in_a_tool_schema_does_not_freeze_the_server(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": CATASTROPHIC}},
              "patternProperties": {"^(b+)+$": {"type": "string"}}, "additionalProperties": False}
    gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[lookup(site, schema)])
    fake_llm.script(
        Reply(tool_calls=[ToolCall("lookup_code", {"code": "a" * 40 + "!", "b" * 40 + "!": "x"})]),
        Reply(text="That code does not look right."),
    )

    turn = {"model": gateway_id, "messages": [{"role": "user", "content": "Is my code valid?"}]}
    (status, answer), slowest = await slowest_healthz_during(server, server.call("POST", "/v1/chat/completions",
                                                                                json=turn))

    assert status == 200 and answer["choices"][0]["message"]["content"] == "That code does not look right."
    assert slowest < HEALTHZ_BUDGET_SECONDS, slowest
    tool_message = fake_llm.requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "Invalid arguments for lookup_code" in tool_message["content"]
    assert site.received_at("/code") == []


async def test_m1_a_matching_argument_still_reaches_the_callback(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": CATASTROPHIC}}}
    gateway_id = await create_gateway(server, fake_llm, protocolFunctions=[lookup(site, schema)])
    fake_llm.script(Reply(tool_calls=[ToolCall("lookup_code", {"code": "aaaa"})]), Reply(text="It is valid."))
    await ask(server, gateway_id)
    assert [call.json()["function"]["content"] for call in site.received_at("/code")] == [{"code": "aaaa"}]


@pytest.mark.parametrize(("schema", "where"), [
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a)\\1$"}}}, "properties.x.pattern"),
    ({"type": "object", "patternProperties": {"^(?!id)": {"type": "string"}}}, "patternProperties"),
    ({"type": "object", "properties": {"x": {"type": "strin"}}}, "properties.x.type"),
    ({"type": "object", "patternProperties": {"^a": {}}, "unevaluatedProperties": False}, "unevaluatedProperties"),
])
async def test_m1_a_schema_botline_cannot_apply_safely_is_refused_naming_the_place(
    server: RunningServer, fake_llm: FakeLLM, schema: dict[str, Any], where: str
) -> None:
    body = gateway_body(fake_llm, protocolFunctions=[lookup(None, schema)])
    status, answer = await server.call("POST", "/api/v1/ai-gateways", json=body)
    assert status == 400, answer
    assert f"parameters.protocolFunctions.0.contentFormat.{where}:" in answer["message"], answer


async def test_m1_an_oversized_schema_is_refused(server: RunningServer, fake_llm: FakeLLM) -> None:
    properties = {f"field{i}": {"type": "string", "description": "x" * 100} for i in range(1000)}
    body = gateway_body(fake_llm, protocolFunctions=[lookup(None, {"type": "object", "properties": properties})])
    status, answer = await server.call("POST", "/api/v1/ai-gateways", json=body)
    assert status == 400 and "contentFormat" in answer["message"] and "65536 bytes" in answer["message"], answer
