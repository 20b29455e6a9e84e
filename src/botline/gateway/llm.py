"""Pooled AsyncOpenAI clients and the mapping of SDK errors to our typed errors.

One AsyncOpenAI per (baseAddress, apiKey, egress trust), on the SDK's aiohttp transport routed through
the egress pools (so the clients hold no sockets of their own, and the least recently used are simply
dropped past `MAX_CLIENTS`). Retries with exponential
backoff and jitter on 408/409/429/5xx and connection errors, Retry-After honoured (the SDK caps it
at 120 s), are the SDK's own: we set `max_retries` and do not write a second retry loop.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import NoReturn

import aiohttp
import httpx2
import openai

from botline.config import LLMSettings
from botline.egress import Egress, Trust
from botline.egress.errors import refusal_in
from botline.egress.sdk_transport import EgressTransport
from botline.gateway.errors import UpstreamError

_PLACEHOLDER_KEY = "not-needed"
"""Sent when a gateway has no apiKey (local models); the SDK insists on a value."""
MAX_CLIENTS = 512
"""Clients kept; repeated edits and /validate calls with new addresses cannot grow the pool past it."""


class ClientPool:
    """Hands out one shared AsyncOpenAI per upstream and trust."""

    def __init__(self, settings: LLMSettings, egress: Egress, *, max_response_bytes: int,
                 capacity: int = MAX_CLIENTS) -> None:
        self._settings = settings
        self._capacity = capacity
        self._egress = egress
        self._max_response_bytes = max_response_bytes
        self._clients: OrderedDict[str, openai.AsyncOpenAI] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, base_address: str, api_key: str | None, trust: Trust) -> openai.AsyncOpenAI:
        pool_key = hashlib.sha256(f"{base_address}\0{api_key or ''}\0{trust}".encode()).hexdigest()
        client = self._clients.get(pool_key)
        if client is not None:
            self._clients.move_to_end(pool_key)
            return client
        timeout = openai.Timeout(self._settings.request_timeout_seconds, connect=self._settings.connect_timeout_seconds)
        transport = EgressTransport(self._egress, trust, max_response_bytes=self._max_response_bytes)
        client = openai.AsyncOpenAI(
            base_url=base_address,
            api_key=api_key or _PLACEHOLDER_KEY,
            max_retries=self._settings.max_retries,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout, transport=transport),
        )
        self._clients[pool_key] = client
        while len(self._clients) > self._capacity:
            self._clients.popitem(last=False)  # no sockets of its own: the egress pools hold them
        return client


def _upstream_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if isinstance(message, str) and message:
            return message
    return exc.message


def raise_upstream(exc: openai.OpenAIError) -> NoReturn:
    """Maps an SDK exception to UpstreamError (the single mapping boundary)."""
    if isinstance(exc, openai.APITimeoutError) and not _connection_failed(exc):
        raise UpstreamError("The AI model did not answer in time.", status_code=504) from exc
    if isinstance(exc, openai.APIConnectionError):
        if refusal_in(exc) is not None:
            raise UpstreamError(
                "The AI model's address is not allowed by this server's egress policy (security.egress).",
                status_code=502,
            ) from exc
        raise UpstreamError("The AI model could not be reached.", status_code=502) from exc
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers)
        text = _upstream_text(exc)
        if status == 429:
            raise UpstreamError(
                f"The AI model is rate limited: {text}", status_code=429, upstream_status=status,
                retry_after=retry_after,
            ) from exc
        if status in (401, 403):
            raise UpstreamError(
                f"The AI model rejected the gateway's credentials: {text}", status_code=502, upstream_status=status
            ) from exc
        if status == 400 or status == 404 or status == 422:
            raise UpstreamError(
                f"The AI model refused the request: {text}", status_code=502, upstream_status=status
            ) from exc
        raise UpstreamError(f"The AI model failed: {text}", status_code=502, upstream_status=status) from exc
    raise UpstreamError(f"The AI model failed: {exc}", status_code=502) from exc


def _connection_failed(exc: BaseException) -> bool:
    """True when the SDK calls it a timeout but the cause was a refused or lost connection.

    The SDK's aiohttp transport maps every aiohttp connection error to a connect *timeout*; the
    original aiohttp error is still in the cause chain.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
            cause, aiohttp.ServerTimeoutError | aiohttp.SocketTimeoutError
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _retry_after(headers: httpx2.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
