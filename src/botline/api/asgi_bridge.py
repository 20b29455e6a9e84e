"""Runs an ASGI application for one aiohttp request: how the MCP SDK's server side (ASGI only) is
served by botline's aiohttp server without a second listener.

Bounded by construction: the request body is read by aiohttp first (within `server.max_body_bytes`)
and handed over in one message; the response is relayed as the application sends it, one part
written (and so flow-controlled by the client's socket) before the next is taken, in one
`web.Response` when it comes whole and as a chunked stream (SSE) when it comes in parts. After the
body, `receive()` waits until the application has finished and then reports a disconnect, so
nothing the application starts outlives the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
"""Headers aiohttp sets itself for the response it writes."""


def http_scope(request: web.Request, extra: Mapping[str, Any]) -> Scope:
    """The ASGI HTTP scope of `request`; `extra` adds keys of the caller's own (namespaced by it)."""
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method, "scheme": request.scheme, "path": request.path,
        "raw_path": request.rel_url.raw_path.encode(), "query_string": request.rel_url.raw_query_string.encode(),
        "root_path": "", "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": (request.remote, 0) if request.remote else None, "server": None, "state": {}, **extra,
    }


class _Relay:
    """Turns the application's `send` messages into the aiohttp response."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._start: Message | None = None
        self.response: web.StreamResponse | None = None
        self.done = False

    def _status_and_headers(self) -> tuple[int, CIMultiDict[str]]:
        assert self._start is not None
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in self._start.get("headers", ()):
            key = bytes(name).decode("latin-1")
            if key.lower() not in HOP_BY_HOP:
                headers.add(key, bytes(value).decode("latin-1"))
        return int(self._start["status"]), headers

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._start is not None:
                raise RuntimeError("The ASGI application started its response twice.")
            self._start = message
            return
        if kind != "http.response.body" or self.done:
            return
        if self._start is None:
            raise RuntimeError("The ASGI application sent a body before starting its response.")
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if self.response is None:
            status, headers = self._status_and_headers()
            if not more:
                self.response, self.done = web.Response(status=status, headers=headers, body=body), True
                return
            self.response = web.StreamResponse(status=status, headers=headers)
            await self.response.prepare(self._request)
        if body:
            await self.response.write(body)
        if not more:
            await self.response.write_eof()
            self.done = True

    def finish(self) -> web.StreamResponse:
        """The response, once the application has returned."""
        if self.response is None and self._start is not None:  # started, no body message: an empty body
            status, headers = self._status_and_headers()
            self.response = web.Response(status=status, headers=headers)
        if self.response is None:
            raise RuntimeError("The ASGI application returned without a response.")
        return self.response


async def serve_asgi(app: ASGIApp, request: web.Request, body: bytes, *,
                     extra: Mapping[str, Any]) -> web.StreamResponse:
    """`app`'s answer to `request` (whose body, already read and bounded, is `body`)."""
    relay = _Relay(request)
    finished = asyncio.Event()
    handed = False

    async def receive() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    try:
        await app(http_scope(request, extra), receive, relay.send)
    except Exception:
        if relay.response is None or not relay.response.prepared:
            raise
        # the stream is under way (the client may have gone): it ends here, nothing more can be said
        log.info("ASGI stream of %s ended early", request.path, exc_info=True)
        return relay.response
    finally:
        finished.set()
    return relay.finish()
