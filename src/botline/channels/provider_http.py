"""HTTP plumbing the WhatsApp adapters share (Z-API, Evolution, Kapso): one JSON request on the app's
`aiohttp.ClientSession`, and the one mapping of provider failures to `DeliveryError`.

429, 408, 409 and 5xx answers and connection failures are retryable (`Retry-After` honoured); any other
4xx is not, and carries the provider's own message. No message ever contains a token or key: URLs are
never quoted (they hold Z-API's instance token) and known secrets are masked in provider messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from botline.channels.base import DeliveryError
from botline.domain.integrations import SECRET_MASK

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
MAX_DETAIL_CHARS = 300
MAX_MEDIA_BYTES = 25 * 1024 * 1024
"""Larger downloads are abandoned (the engine's upload limit is smaller anyway)."""
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class ProviderReply:
    status: int
    headers: Mapping[str, str]
    body: Any
    """The parsed JSON answer, or None when it was empty or not JSON."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def request_json(
    http: aiohttp.ClientSession, method: str, url: str, *, provider: str, json: Any = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderReply:
    """One request; any HTTP status is returned, connection failures and timeouts raise a retryable
    DeliveryError naming only the provider and the kind of failure."""
    try:
        async with http.request(method, url, json=json, headers=headers, timeout=REQUEST_TIMEOUT) as response:
            raw = await response.read()
            return ProviderReply(response.status, response.headers, _json_or_none(raw))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"{provider} unreachable: {type(exc).__name__}", retryable=True) from None


async def download(http: aiohttp.ClientSession, url: str, *, headers: Mapping[str, str] | None = None) -> bytes | None:
    """The bytes at `url`, or None (failure, not 2xx, or over MAX_MEDIA_BYTES)."""
    try:
        async with http.get(url, headers=headers, timeout=REQUEST_TIMEOUT) as response:
            if not 200 <= response.status < 300 or (response.content_length or 0) > MAX_MEDIA_BYTES:
                return None
            blob = await response.content.read(MAX_MEDIA_BYTES + 1)
            return blob if len(blob) <= MAX_MEDIA_BYTES else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("media download failed: %s", type(exc).__name__)
        return None


def status_error(provider: str, reply: ProviderReply, detail: str | None, *, secrets: Iterable[str | None] = ()
                 ) -> DeliveryError:
    """The DeliveryError for a non-2xx answer; `detail` is the provider's own message, if it gave one."""
    text = redact(detail or "", secrets)[:MAX_DETAIL_CHARS]
    message = f"{provider} answered HTTP {reply.status}" + (f": {text}" if text else "")
    retryable = reply.status in RETRYABLE_STATUSES or reply.status >= 500
    return DeliveryError(message, retryable=retryable, retry_after=retry_after(reply.headers) if retryable else None)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every known secret replaced by the mask (providers echo tokens in some errors)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, SECRET_MASK)
    return text


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
