"""Scoped API keys, enforced once for every request (after authentication): a scoped key reaches only
/v1 and minting narrower keys, within its own rate. The gateway part of a scope is checked where the
gateway is known (api/openai_compat.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from botline.api.auth import PRINCIPAL
from botline.ratelimit import RateLimiter

MINUTE = 60
SCOPED_ROUTES = (("POST", "/api/v1/accounts/api-key"),)
"""Management routes a scoped key may call besides /v1: minting a key no wider than itself."""
INFERENCE_PREFIX = "/v1/"


def scope_middleware(
    limiter_of: Callable[[web.Application], RateLimiter],
    refuse: Callable[[web.Request, int, str, dict[str, str] | None], web.StreamResponse],
) -> Middleware:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        scope = None if principal is None else principal.key.scope
        if principal is None or scope is None:
            return await handler(request)
        if not request.path.startswith(INFERENCE_PREFIX) and (request.method, request.path) not in SCOPED_ROUTES:
            return refuse(request, 403, "This API key is scoped: it may call /v1 (inference) and create "
                                        "narrower keys only; use an account key for the management API.", None)
        if scope.requests_per_minute is not None:
            retry_after = await limiter_of(request.app).hit(
                f"key:{principal.key.id}", limit=scope.requests_per_minute, window_seconds=MINUTE)
            if retry_after is not None:
                return refuse(request, 429, f"This API key's rate limit ({scope.requests_per_minute} requests "
                                            "per minute) is reached; retry later.",
                              {"Retry-After": str(int(retry_after))})
        return await handler(request)

    return middleware
