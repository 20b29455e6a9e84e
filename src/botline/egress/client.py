"""`Egress`: the one outbound HTTP client (two connection pools: the operator's, and the tenants'
whose resolver refuses internal addresses), with redirects followed by hand so that every hop is
checked and a tenant's credentials never follow a redirect to another origin."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from botline.egress.errors import DestinationRefused, EgressError, EgressFailed, ResponseTooLarge, refusal_in
from botline.egress.policy import EgressPolicy, Trust
from botline.egress.resolver import GuardedResolver

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SAFE_ACROSS_ORIGINS = frozenset({"accept", "accept-language", "user-agent"})
"""Caller headers kept when a redirect leaves the origin; every other one may be a credential."""
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class EgressResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Egress:
    """Open with `start()` inside the running loop; `close()` releases both pools."""

    def __init__(self, policy: EgressPolicy, *, max_redirects: int = 5, connect_timeout: float = 10.0,
                 limit_per_host: int = 0, dns: Callable[[], AbstractResolver] | None = None) -> None:
        """`dns` builds the resolver each pool asks (aiohttp's default when None); the tenant pool
        filters what it returns."""
        self.policy = policy
        self._dns = dns
        self._max_redirects = max_redirects
        self._connect_timeout = connect_timeout
        self._limit_per_host = limit_per_host
        self._sessions: dict[Trust, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        for trust in Trust:
            inner = self._dns() if self._dns is not None else DefaultResolver()
            resolver = GuardedResolver(self.policy, inner) if trust is Trust.TENANT else inner
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._limit_per_host, resolver=resolver)
            self._sessions[trust] = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def __aenter__(self) -> Egress:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def session(self, trust: Trust) -> aiohttp.ClientSession:
        """The pool for `trust` (for clients that drive aiohttp themselves: the SDK transport)."""
        return self._sessions[trust]

    def check_destination(self, url: URL, trust: Trust) -> None:
        """Refuses a URL botline must not request: not http(s), or (for tenants) an IP literal that the
        policy refuses. Host names are checked by the tenant pool's resolver, on the resolved address."""
        if url.scheme not in DEFAULT_PORTS or not url.host:
            raise EgressFailed("only absolute http(s) URLs can be fetched")
        if trust is Trust.OPERATOR:
            return
        host = url.host
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        port = url.port or DEFAULT_PORTS[url.scheme]
        if not self.policy.permits(host, port, host):
            raise DestinationRefused()

    async def request(
        self, method: str, url: str, *, trust: Trust, max_bytes: int, timeout: float,
        headers: Mapping[str, str] | None = None, json: Any = None, data: bytes | None = None,
        follow_redirects: bool = True,
    ) -> EgressResponse:
        """One request, redirects followed (each hop checked), body read up to `max_bytes`.

        Any HTTP status is returned. Raises DestinationRefused, ResponseTooLarge or EgressFailed, whose
        messages never contain the URL.
        """
        sent_headers = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            sent_headers.setdefault("Content-Type", "application/json")
        try:
            target = URL(url)
        except (TypeError, ValueError):
            raise EgressFailed("the URL is not valid") from None
        try:
            async with asyncio.timeout(timeout):
                for _ in range(self._max_redirects + 1):
                    self.check_destination(target, trust)
                    async with self._sessions[trust].request(
                        method, target, headers=sent_headers, data=data, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, self._connect_timeout)),
                    ) as response:
                        location = response.headers.get("Location")
                        if not follow_redirects or response.status not in REDIRECT_STATUSES or not location:
                            body = await read_capped(response, max_bytes)
                            return EgressResponse(response.status, response.headers, body)
                    following = target.join(URL(location))
                    if _origin(following) != _origin(target):
                        sent_headers = {k: v for k, v in sent_headers.items() if k.lower() in SAFE_ACROSS_ORIGINS}
                    if response.status == 303 or (response.status in (301, 302) and method.upper() == "POST"):
                        method, data = "GET", None
                        sent_headers = {k: v for k, v in sent_headers.items() if k.lower() != "content-type"}
                    target = following
                raise EgressFailed("too many redirects")
        except EgressError:
            raise
        except TimeoutError:
            raise EgressFailed("timed out") from None
        except (aiohttp.ClientError, ValueError) as exc:
            refused = refusal_in(exc)
            if refused is not None:
                raise refused from None
            raise EgressFailed(f"the request failed ({type(exc).__name__})") from None


def _origin(url: URL) -> tuple[str, str, int | None]:
    return url.scheme, (url.host or "").lower(), url.port


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, or ResponseTooLarge as soon as it passes `max_bytes`."""
    if (response.content_length or 0) > max_bytes:
        raise ResponseTooLarge(max_bytes)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
