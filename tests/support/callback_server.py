"""A loopback HTTP server standing in for a site's own endpoints: protocol-function callbacks,
function sources, instruction sources and contextLocation pages. It records what it receives."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Answer:
    status: int = 200
    body: bytes | str = b"ok"
    content_type: str = "text/plain"
    stall: bool = False
    """Never answer (until the server stops): a caller's timeout."""


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class CallbackServer:
    """Answers each path with its scripted answers (FIFO, the last one repeats)."""

    received: list[Received] = field(default_factory=list)
    _answers: dict[str, deque[Answer]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def answer(self, path: str, *answers: Answer) -> str:
        self._answers[path] = deque(answers)
        return self.url + path

    def received_at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers), await request.read()))
        queue = self._answers.get(request.path)
        if not queue:
            return web.Response(status=404, text="no answer scripted")
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        if answer.stall:
            await self._stopping.wait()
        body = answer.body.encode() if isinstance(answer.body, str) else answer.body
        return web.Response(status=answer.status, body=body, content_type=answer.content_type)

    async def __aenter__(self) -> CallbackServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
