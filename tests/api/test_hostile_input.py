"""M1 as a class: every regex-checked field of the API refuses an adversarial 100 KB value (one
built to make a backtracking regex take quadratic or worse time) with a 400 naming the field, and
the server keeps answering meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import gateway_body
from tests.emulators.fake_llm import FakeLLM
from tests.support.loop_watch import HEALTHZ_BUDGET_SECONDS, collector_as_botline_serve_sets_it, slowest_healthz_during
from tests.support.server import RunningServer
from tests.support.webchat import client_body, create_client, open_session, prompt, public

__all__ = ["collector_as_botline_serve_sets_it"]  # autouse: collect garbage as `botline serve` does

SIZE = 100_000
BACKTRACKING_COLOUR = "rgb(" + " " * SIZE + "a!"
"""The review's M1 input: whitespace both `\\s*` and the class after it could take, then no match."""


@pytest.mark.parametrize(("parameters", "field"), [
    ({"primaryColor": BACKTRACKING_COLOUR}, "primaryColor"),
    ({"primaryColor": "hsl(" + "1," * (SIZE // 2) + "!)"}, "primaryColor"),
    ({"allowedFrameOrigins": ["https://" + "a." * (SIZE // 2) + ":1/"]}, "allowedFrameOrigins"),
    ({"allowedFrameOrigins": ["http://[" + ":" * SIZE]}, "allowedFrameOrigins"),
    ({"messageDebounceInterval": "1" * SIZE + ".1:00"}, "messageDebounceInterval"),
    ({"maxScheduledIgnoredZone": "9" * 30}, "maxScheduledIgnoredZone"),
])
async def test_a_hostile_chat_client_field_is_refused_naming_it(
    server: RunningServer, parameters: dict[str, Any], field: str
) -> None:
    status, body = await server.call("POST", "/api/v1/web-chat-client", json=client_body(None, **parameters))
    assert status == 400 and field in body["message"], body


@pytest.mark.parametrize(("function", "field"), [
    ({"name": "a" + "_" * SIZE + "!"}, "name"),
    ({"callbackUrl": "https://" + "a" * SIZE}, "callbackUrl"),
])
async def test_a_hostile_protocol_function_field_is_refused_naming_it(
    server: RunningServer, fake_llm: FakeLLM, function: dict[str, Any], field: str
) -> None:
    tool = {"name": "lookup", "description": "Looks an order up.", "callbackUrl": "https://tools.example/lookup",
            "contentFormat": {"type": "object"}, **function}
    gateway = gateway_body(fake_llm, protocolFunctions=[tool])
    status, body = await server.call("POST", "/api/v1/ai-gateways", json=gateway)
    assert status == 400 and f"protocolFunctions.0.{field}" in body["message"], body


async def test_a_hostile_prompt_role_or_data_url_is_refused(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, inputModes=["Image"])
    access_key = (await open_session(server, client_id))["accessKey"]
    status, body = await server.call("POST", public(access_key, "/prompt"),
                                     json={"prompt": {"role": "u" * SIZE, "content": "hi"}})
    assert status == 400 and "role" in body["message"], body
    image = [{"type": "text", "text": "what is this?"},
             {"type": "image_url", "image_url": {"url": "data:" + "a" * SIZE}}]
    status, body = await server.call("POST", public(access_key, "/prompt"), json=prompt(image))
    assert status == 400 and "image" in body["message"], body
    assert fake_llm.requests == []


@pytest.mark.timeout(60)
async def test_m1_a_backtracking_primary_color_is_refused_while_healthz_keeps_answering(
    server: RunningServer
) -> None:
    hostile = client_body(None, primaryColor=BACKTRACKING_COLOUR)
    (status, body), slowest = await slowest_healthz_during(
        server, server.call("POST", "/api/v1/web-chat-client", json=hostile))
    assert status == 400 and "primaryColor" in body["message"], body
    assert slowest < HEALTHZ_BUDGET_SECONDS, slowest
