"""Loopback servers for the egress tests.

`InternalService` stands for what a tenant must never reach (a metadata service, an admin API): it
counts every TCP connection it accepts, so a test proves that no connection was made, not only that
the request failed. `Site` is a small aiohttp app answering per path (redirects, large bodies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

SECRET = "INTERNAL-SECRET admin-token=tok_internal_123"


@dataclass
class InternalService:
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = SECRET.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> InternalService:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Site:
    routes: dict[str, Handler] = field(default_factory=dict)
    headers_seen: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.headers_seen.setdefault(request.path, []).append(dict(request.headers))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404)
        return await handler(request)

    async def __aenter__(self) -> Site:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def text(body: str | bytes, status: int = 200) -> Handler:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body.encode() if isinstance(body, str) else body)
    return handle


def redirect_to(location: str, status: int = 302) -> Handler:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})
    return handle


def streamed(size: int, chunk: int = 64 * 1024) -> Handler:
    """A chunked body of `size` bytes with no Content-Length (the cap must hold while reading)."""
    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        sent = 0
        while sent < size:
            await response.write(b"x" * min(chunk, size - sent))
            sent += chunk
        await response.write_eof()
        return response
    return handle
