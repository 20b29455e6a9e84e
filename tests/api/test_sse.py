"""Keep-alive pings on server-sent event streams: proxies drop connections that stay silent."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, Gauge

from botline.api.sse import PING_FRAME, Pinger, SseStream

INTERVAL = 0.05


async def test_idle_streams_are_pinged_until_they_close() -> None:
    pinger = Pinger(INTERVAL)
    registry = CollectorRegistry()
    open_streams = Gauge("open_streams", "streams open now", registry=registry)
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        stream = SseStream(request, open_streams=open_streams, pinger=pinger)
        await stream.frames([b"event: delta\ndata: {}\n\n"])
        await release.wait()  # idle: a slow model, say
        await stream.close()
        return stream.response

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:

        async def read() -> bytes:
            async with http.get(server.make_url("/")) as response:
                return await response.read()

        readers = [asyncio.create_task(read()) for _ in range(2)]
        await asyncio.sleep(INTERVAL * 5)
        release.set()
        bodies = await asyncio.gather(*readers)
    for body in bodies:
        assert body.startswith(b"event: delta\ndata: {}\n\n")
        assert body.count(PING_FRAME) >= 2
    assert registry.get_sample_value("open_streams") == 0  # both were counted while open, and are no longer
