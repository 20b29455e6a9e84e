"""A real MCP server (the SDK's MCPServer over Streamable HTTP, served by uvicorn on loopback) that
records what it receives: the JSON-RPC methods posted and each tool call's arguments and `_meta`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import orjson
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.support.images import png

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
PNG = b"\x89PNG\r\n\x1a\n"
PICTURE = png(4, 4)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "


def image(data: bytes, mime_type: str, annotations: types.Annotations | None = None) -> types.ImageContent:
    return types.ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime_type,
                              annotations=annotations)


@dataclass
class Call:
    tool: str
    arguments: dict[str, Any]
    meta: dict[str, Any]


@dataclass
class McpTestServer:
    name: str = "test tools"
    calls: list[Call] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    """JSON-RPC methods in the order they were posted."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """`slow` answers once this is set."""
    url: str = ""
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def build(self) -> MCPServer:
        server = MCPServer(self.name)

        def record(tool: str, arguments: dict[str, Any], ctx: Context) -> None:
            self.calls.append(Call(tool, arguments, dict(ctx.request_context.meta or {})))

        @server.tool(description="Adds two integers.")
        async def add(a: int, b: int, ctx: Context) -> str:
            record("add", {"a": a, "b": b}, ctx)
            return str(a + b)

        @server.tool(description="Answers only when the test lets it.")
        async def slow(ctx: Context) -> str:
            record("slow", {}, ctx)
            await self.release.wait()
            return "finally"

        @server.tool(description="Always fails.")
        async def broken(ctx: Context) -> str:
            record("broken", {}, ctx)
            raise ToolError("the database is on fire")

        @server.tool(description="Returns a picture and a caption.")
        async def picture(ctx: Context) -> list[types.ContentBlock]:
            record("picture", {}, ctx)
            return [types.TextContent(type="text", text="A grey square."), image(PICTURE, "image/png")]

        @server.tool(description="Returns pictures only the assistant should see, a fake and a large one.")
        async def odd_pictures(ctx: Context) -> list[types.ContentBlock]:
            record("odd_pictures", {}, ctx)
            return [image(PICTURE, "image/png", types.Annotations(audience=["assistant"])),
                    image(b"<svg onload=alert(1)>", "image/png"), image(PNG + bytes(4096), "image/png")]

        @server.tool(description="Returns a voice note and a text resource.")
        async def voice(ctx: Context) -> list[types.ContentBlock]:
            record("voice", {}, ctx)
            return [types.AudioContent(type="audio", data=base64.b64encode(WAV).decode(), mime_type="audio/wav"),
                    types.EmbeddedResource(type="resource", resource=types.TextResourceContents(
                        uri="file:///notes.txt", text="Meeting notes.", mime_type="text/plain"))]

        @server.tool(description="Returns a lot of text.")
        async def flood(size: int, ctx: Context) -> str:
            record("flood", {"size": size}, ctx)
            return "x" * size

        return server

    def _recording(self, inner: ASGIApp) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] != "POST":
                await inner(scope, receive, send)
                return
            messages, body, more = [], b"", True
            while more:
                message = await receive()
                messages.append(message)
                body += message.get("body", b"")
                more = message.get("more_body", False)
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):  # a batch or a bad body
                self.methods.append(str(orjson.loads(body).get("method")))
            pending = iter(messages)

            async def replay() -> Message:
                return next(pending, None) or await receive()

            await inner(scope, replay, send)

        return app

    async def __aenter__(self) -> McpTestServer:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        app = self._recording(self.build().streamable_http_app())
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                     lifespan="on", timeout_graceful_shutdown=0.2))
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        self.url = f"http://127.0.0.1:{port}/mcp"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = None

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
