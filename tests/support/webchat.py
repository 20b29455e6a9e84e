"""Helpers to set up a chat client and a session through the management API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer


def client_body(gateway_id: str | None, **parameters: Any) -> dict[str, Any]:
    limiting = parameters.pop("limitingParameters", {})
    return {
        "name": parameters.pop("name", "Website"),
        "aiGatewayId": gateway_id,
        "limitingParameters": limiting,
        "clientParameters": {"primaryColor": "#6366f1", "pageTitle": "Help center", **parameters},
    }


async def create_client(server: RunningServer, fake: FakeLLM | None, key: str | None = None,
                        gateway: dict[str, Any] | None = None, **parameters: Any) -> str:
    gateway_id = await create_gateway(server, fake, key=key, **(gateway or {})) if fake is not None else None
    status, body = await server.call("POST", "/api/v1/web-chat-client", key=key,
                                     json=client_body(gateway_id, **parameters))
    assert status == 200, body
    return str(body["id"])


async def open_session(server: RunningServer, client_id: str, **body: Any) -> dict[str, Any]:
    status, created = await server.call("POST", f"/api/v1/web-chat-client/{client_id}/sessions", json=body)
    assert status == 200, created
    return dict(created)


def public(access_key: str, suffix: str = "") -> str:
    return f"/api/v1/public/chat-clients/{access_key}{suffix}"


def prompt(text: Any) -> dict[str, Any]:
    return {"prompt": {"role": "user", "content": text}}


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream, as they arrive."""
    name = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, orjson.loads(line.removeprefix("data: "))
