"""A real botline server on a loopback port, and a small HTTP client for tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from botline.app import build_app
from botline.config import Settings
from botline.domain.clock import Clock
from tests.support.egress import LOOPBACK_ALLOWED

ADMIN_KEY = "sk-test-admin-key-0123456789abcdefghijklmnopqrstuv"


@dataclass
class RunningServer:
    url: str
    http: aiohttp.ClientSession
    admin_key: str = ADMIN_KEY
    app: web.Application | None = field(default=None, repr=False)

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def call(
        self, method: str, path: str, *, key: str | None = None, json: Any = None, data: Any = None,
        headers: dict[str, str] | None = None, **kwargs: Any,
    ) -> tuple[int, Any]:
        """Sends a request with the admin key (or `key`); returns (status, parsed JSON or text)."""
        all_headers = {**self.headers(key), **(headers or {})}
        async with self.http.request(method, self.url + path, json=json, data=data, headers=all_headers,
                                     **kwargs) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            return response.status, body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_settings(storage_url: str, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "storage": {"url": storage_url},
        "auth": {"admin_keys": [ADMIN_KEY]},
        "llm": {"max_retries": 0},
        "logging": {"level": "INFO"},
        "security": {"egress": {"allow": list(LOOPBACK_ALLOWED)}},
        # Lexical only unless a test turns embeddings on (tests/knowledge/test_semantic_*): loading the local
        # model costs each server a second, and the lexical suites assert lexical rankings.
        "knowledge": {"embeddings": {"provider": "off"}},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return Settings(**data)


@asynccontextmanager
async def running_server(
    settings: Settings, *, clock: Clock | None = None, port: int | None = None
) -> AsyncIterator[RunningServer]:
    """`port` when the settings must name it beforehand (webchat.chat_origin); else a free one."""
    port = port or free_port()
    settings.server.port = port
    app = build_app(settings, clock=clock)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield RunningServer(url=f"http://127.0.0.1:{port}", http=http, app=app)
    finally:
        await runner.cleanup()
