"""CORS for the public chat API: a site's own scripts may call it (the accessKey is the credential,
there are no cookies), so any origin is allowed there and nowhere else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

PUBLIC_PREFIX = "/api/v1/public/"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Accept",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def cors_preflight(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answers OPTIONS preflights on the public API."""
    if request.method == "OPTIONS" and request.path.startswith(PUBLIC_PREFIX):
        return web.Response(status=204)
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare, so streamed answers get the headers too."""
    if request.path.startswith(PUBLIC_PREFIX):
        response.headers.update(CORS_HEADERS)
