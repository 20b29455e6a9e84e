"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from aiohttp import web

from botline.api.http import json_response
from botline.api.openapi import Access, Answer, documented
from botline.api.state import services
from botline.store.base import StoreUnavailable

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

NOT_READY = "The storage does not answer."


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
        # The error names the storage's host and port: the log gets it, the (public) probe does not.
        log.warning("readiness check failed: %s", exc)
        return json_response({"status": "unavailable", "message": NOT_READY}, status=503)
    return json_response({"status": "ok"})
