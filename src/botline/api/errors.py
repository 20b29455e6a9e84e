"""The one boundary where every failure becomes a JSON `{"message": ...}` answer, plus the access log."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from botline.api.http import ApiError, json_response
from botline.domain.base import random_hex
from botline.gateway.errors import GatewayError
from botline.logs import request_id
from botline.store.base import ConflictError, StoreUnavailable

log = logging.getLogger("botline.access")
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
OPENAI_PREFIX = "/v1/"
STORE_RETRY_AFTER = "1"
"""Seconds a client is asked to wait after a 503 for unavailable storage (a Redis restart takes about that)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_OPENAI_ERROR_TYPES = {401: "invalid_request_error", 402: "insufficient_quota", 403: "permission_error",
                       404: "invalid_request_error", 429: "rate_limit_error"}


def error_response(request: web.Request, status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """`{"message"}`; on /v1 routes also OpenAI's `{"error": {...}}` so the openai SDK reads it."""
    body: dict[str, object] = {"message": message}
    if request.path.startswith(OPENAI_PREFIX):
        error_type = _OPENAI_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        body["error"] = {"message": message, "type": error_type, "param": None, "code": None}
    return json_response(body, status=status, headers=dict(headers) if headers else None)


def _http_exception_message(exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return "Not found."
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"Method {exc.method} is not allowed here."
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "The request body is too large."
    return exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get(REQUEST_ID_HEADER) or random_hex(8)
    request[REQUEST_ID] = rid
    token = request_id.set(rid)
    started = time.perf_counter()
    try:
        response = await _answer(request, handler)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %s", request.method, _route_of(request), response.status,
                extra={"status": response.status, "ms": round((time.perf_counter() - started) * 1000, 2)},
            )
        return response
    finally:
        request_id.reset(token)


def _route_of(request: web.Request) -> str:
    """The matched route's pattern (`/chat/{access_key}`), so no access key or webhook token is logged."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, streamed ones included, names its request id."""
    if REQUEST_ID in request:
        response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.status, exc.message, exc.headers)
    except GatewayError as exc:
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        return error_response(request, exc.status_code, exc.message, headers)
    except ConflictError as exc:
        return error_response(request, 409, f"Conflict: {exc}.")
    except StoreUnavailable as exc:
        logging.getLogger(__name__).warning("store unavailable on %s %s: %s", request.method, _route_of(request), exc)
        return error_response(request, 503, StoreUnavailable.public_message, {"Retry-After": STORE_RETRY_AFTER})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
        return error_response(request, exc.status, _http_exception_message(exc), kept)
    except Exception:  # the last resort: log it, never show a traceback
        logging.getLogger(__name__).exception("unhandled error on %s %s", request.method, _route_of(request))
        return error_response(request, 500, "Internal error; it has been logged.")
