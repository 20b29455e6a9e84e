"""JSON log lines: every line botline writes during a turn names its request, session, channel and gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from botline.logs import JsonFormatter
from tests.channels.conftest import connect, session_of
from tests.channels.test_zapi import PHONE, integration, settings_overrides, zapi
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer, free_port
from tests.support.webchat import client_body, open_session, prompt, public

__all__ = ["settings_overrides", "zapi"]  # the Z-API tests' fixtures


class JsonLines(logging.Handler):
    """Formats every record with botline's own formatter, as `botline serve` writes it, and keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))

    def botline(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"].startswith("botline")]


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def unreachable_rules() -> dict[str, Any]:
    """An instruction source nobody serves: the pipeline logs a warning during the turn and goes on."""
    return {"systemInstructionsSources": [{"name": "rules", "url": f"http://127.0.0.1:{free_port()}/rules"}]}


async def test_every_line_of_a_web_chat_turn_names_its_request_session_channel_and_gateway(
    server: RunningServer, fake_llm: FakeLLM, logs: JsonLines
) -> None:
    gateway = await create_gateway(server, fake_llm, **unreachable_rules())
    _, client = await server.call("POST", "/api/v1/web-chat-client", json=client_body(gateway))
    session = await open_session(server, client["id"])
    logs.lines.clear()

    status, _ = await server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("Hi"))

    assert status == 200
    lines = logs.botline()
    assert {"botline.gateway.pipeline", "botline.access"} <= {line["logger"] for line in lines}
    request_ids = {line.get("requestId") for line in lines}
    assert len(request_ids) == 1 and None not in request_ids
    for line in lines:
        assert (line.get("sessionId"), line.get("channel"), line.get("gateway")) == (
            session["sessionId"], "webchat", gateway), line


async def test_every_line_of_a_channel_turn_names_its_session_channel_and_gateway(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, logs: JsonLines
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi), gateway=unreachable_rules())
    _, client = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}")
    gateway = client["aiGateway"]["id"]
    zapi.fail_next(429, retry_after=0.01)  # the delivery logs its retry
    logs.lines.clear()

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "hello")) == 200
    await zapi.wait_for_sends(1)

    session = await session_of(server, channel.client_id, f"Zapi:{PHONE}")
    assert session is not None
    [ack, *turn] = logs.botline()
    assert ack["logger"] == "botline.access" and ack["message"].startswith("POST /api/v1/webhooks/")
    assert {"botline.gateway.pipeline", "botline.engine.delivery"} <= {line["logger"] for line in turn}
    for line in turn:
        assert (line.get("sessionId"), line.get("channel"), line.get("gateway")) == (session.id, "zapi", gateway), line
        assert line["requestId"] == ack["requestId"]  # the webhook that woke the chat's worker
