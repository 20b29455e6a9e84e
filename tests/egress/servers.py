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

from tests.support.callback_server import CallbackServer, Received

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
class Site(CallbackServer):
    """A CallbackServer whose paths are answered by handlers (redirects, streamed bodies)."""

    routes: dict[str, Handler] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def headers_at(self, path: str) -> list[dict[str, str]]:
        return [received.headers for received in self.received_at(path)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.method, request.path, dict(request.headers), await request.read()))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404)
        return await handler(request)


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
