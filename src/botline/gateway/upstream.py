"""The one mapping of a failed model call to UpstreamError, and its user-facing texts.

Both model clients map here (the SDK's exceptions through `raise_upstream`, the lean client through the
same constructors), so a person or a /v1 caller reads the same sentence whichever client made the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

import aiohttp
import openai
import orjson

from botline.egress.errors import ResponseTooLarge, refusal_in
from botline.gateway.errors import UpstreamError

PLACEHOLDER_KEY = "not-needed"
"""Sent when a gateway has no apiKey (local models); the SDK insists on a value, and some servers too."""


def _upstream_text(exc: openai.APIStatusError) -> str:
    return _message_in(exc.body) or exc.message


def _message_in(inner: object) -> str | None:
    """The `message` of an error object, or of an `error` object inside it."""
    if not isinstance(inner, dict):
        return None
    nested = inner.get("error")
    message = inner.get("message") or (nested.get("message") if isinstance(nested, dict) else None)
    return message if isinstance(message, str) and message else None


def raise_upstream(exc: openai.OpenAIError) -> NoReturn:
    """Maps an SDK exception to UpstreamError (the SDK client's side of the mapping boundary)."""
    if isinstance(exc, openai.APITimeoutError) and not _connection_failed(exc):
        raise timed_out() from exc
    if isinstance(exc, openai.APIConnectionError):
        raise unreachable(exc) from exc
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        raise status_failure(status, _upstream_text(exc), retry_after_of(exc.response.headers)) from exc
    raise UpstreamError(f"The AI model failed: {exc}", status_code=502) from exc


def timed_out() -> UpstreamError:
    return UpstreamError("The AI model did not answer in time.", status_code=504)


def unreachable(exc: BaseException) -> UpstreamError:
    """A connection that failed, was refused by the egress policy, or brought too large an answer."""
    if refusal_in(exc) is not None:
        return UpstreamError(
            "The AI model's address is not allowed by this server's egress policy (security.egress).",
            status_code=502,
        )
    if too_large_in(exc):
        return too_large()
    return UpstreamError("The AI model could not be reached.", status_code=502)


def too_large() -> UpstreamError:
    return UpstreamError(
        "The AI model's answer is larger than this server accepts (security.egress.model_response_max_bytes).",
        status_code=502,
    )


def cut_off() -> UpstreamError:
    """The connection broke mid-stream, after the answer had begun."""
    return UpstreamError("The AI model's answer was cut off.")


def status_failure(status: int, text: str, retry_after: float | None) -> UpstreamError:
    """An error answer (after retries), by status; `text` is the upstream's own message."""
    if status == 429:
        return UpstreamError(
            f"The AI model is rate limited: {text}", status_code=429, upstream_status=status, retry_after=retry_after,
        )
    if status in (401, 403):
        return UpstreamError(
            f"The AI model rejected the gateway's credentials: {text}", status_code=502, upstream_status=status
        )
    if status in (400, 404, 422):
        return UpstreamError(f"The AI model refused the request: {text}", status_code=502, upstream_status=status)
    return UpstreamError(f"The AI model failed: {text}", status_code=502, upstream_status=status)


def error_text(status: int, body: bytes) -> str:
    """The message of an error body as the SDK client reads it, else "Error code: N"."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    inner = payload.get("error", payload) if isinstance(payload, dict) else None
    return _message_in(inner) or f"Error code: {status}"


def too_large_in(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ResponseTooLarge):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """The Retry-After seconds passed on to the caller of a rate-limited turn."""
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
