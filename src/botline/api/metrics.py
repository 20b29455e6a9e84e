"""GET /metrics: the app's Prometheus metrics in the text exposition format.

The page holds counts and timings only (no ids, no secrets). With `server.metrics_token` set it needs
`Authorization: Bearer <token>`; without it, it is open and the reverse proxy keeps it off the internet.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from botline.api.http import ApiError
from botline.api.openapi import Access, documented
from botline.api.state import services

routes = web.RouteTableDef()

BEARER = "bearer"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
"""What `generate_latest` writes: the classic text format every Prometheus version reads."""


@routes.get("/metrics")
@documented("Prometheus metrics (text format).", access=Access.PUBLIC, media_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    """Open unless server.metrics_token is set; then it needs `Authorization: Bearer <token>`."""
    svc = services(request)
    token = svc.settings.server.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != BEARER or not hmac.compare_digest(given.strip().encode(),
                                                               token.get_secret_value().encode()):
            raise ApiError(401, "GET /metrics needs the header Authorization: Bearer <server.metrics_token>.",
                           headers={"WWW-Authenticate": "Bearer"})
    return web.Response(body=svc.metrics.render(), headers={"Content-Type": TEXT_FORMAT})
