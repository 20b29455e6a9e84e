"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from botline.api.http import json_response
from botline.api.openapi import Access, Answer, documented
from botline.api.state import services
from botline.store.base import StoreUnavailable

routes = web.RouteTableDef()


@routes.get("/healthz")
@documented("Liveness: the process serves.", access=Access.PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
@documented(
    "Readiness: the storage answers.", access=Access.PUBLIC, answers={503: Answer("The storage does not answer.")},
)
async def readyz(request: web.Request) -> web.Response:
    """The store answers: this replica can take traffic."""
    try:
        await services(request).store.ping()
    except StoreUnavailable as exc:
        return json_response({"status": "unavailable", "message": str(exc)}, status=503)
    return json_response({"status": "ok"})
