"""HTTP plumbing the WhatsApp adapters share (Z-API, Evolution, Kapso): one JSON request through the
egress layer, and the one mapping of provider failures to `DeliveryError`.

429, 408, 409 and 5xx answers and connection failures are retryable (`Retry-After` honoured); any other
4xx is not, and carries the provider's own message. No message ever contains a token or key: URLs are
never quoted (they hold Z-API's instance token) and known secrets are masked in provider messages.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from botline.channels.base import DeliveryError
from botline.domain.integrations import SECRET_MASK
from botline.egress import DestinationRefused, Egress, EgressError, Trust

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30.0
MAX_DETAIL_CHARS = 300
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


@dataclass(frozen=True)
class ProviderHttp:
    """The egress client and the read caps (security.egress) the adapters use."""

    egress: Egress
    max_reply_bytes: int
    max_media_bytes: int

    async def request_json(
        self, method: str, url: str, *, provider: str, trust: Trust, json: Any = None,
        headers: Mapping[str, str] | None = None, data: bytes | None = None,
    ) -> ProviderReply:
        """One request; any HTTP status is returned. A refused destination is a final DeliveryError;
        connection failures, timeouts and oversized answers are retryable. Messages name only the
        provider and the kind of failure."""
        try:
            reply = await self.egress.request(method, url, trust=trust, json=json, headers=headers, data=data,
                                              max_bytes=self.max_reply_bytes, timeout=REQUEST_TIMEOUT_SECONDS)
        except DestinationRefused as exc:
            raise DeliveryError(f"{provider} unreachable: {exc.message}", retryable=False) from None
        except EgressError as exc:
            raise DeliveryError(f"{provider} unreachable: {exc.message}", retryable=True) from None
        return ProviderReply(reply.status, reply.headers, _json_or_none(reply.body))

    async def download(self, url: str, *, trust: Trust = Trust.TENANT,
                       headers: Mapping[str, str] | None = None) -> bytes | None:
        """The bytes at `url`, or None (failure, refused destination, not 2xx, or over the cap). Media
        URLs arrive in webhooks, so they get the tenant policy unless the caller knows better."""
        try:
            reply = await self.egress.request("GET", url, trust=trust, headers=headers,
                                              max_bytes=self.max_media_bytes, timeout=REQUEST_TIMEOUT_SECONDS)
        except EgressError as exc:
            log.info("media download failed: %s", exc.message)
            return None
        return reply.body if reply.ok else None


def multipart(fields: Mapping[str, str], file_field: str, filename: str, content_type: str, blob: bytes
              ) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type, for an upload through the egress layer."""
    boundary = f"botline-{secrets.token_hex(16)}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + blob + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


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
