"""Fetching remote context: instruction sources and function sources (cached), contextLocation (fresh)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from botline.gateway.errors import SourceUnavailable
from botline.logs import loggable_url

log = logging.getLogger(__name__)

MAX_REMOTE_BYTES = 10 * 1024 * 1024


@dataclass
class _Entry:
    body: bytes
    fetched_at: float


class RemoteFetcher:
    """GETs URLs through one shared aiohttp session, caching bodies for a per-call TTL."""

    def __init__(self, http: aiohttp.ClientSession, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], _Entry] = {}

    async def cached(self, url: str, *, headers: Mapping[str, str], ttl: float, timeout: float) -> bytes:
        """The body of `url`, from cache while younger than `ttl` seconds.

        On failure a stale copy is used when there is one (and logged); otherwise SourceUnavailable.
        """
        key = (url, tuple(sorted(headers.items())))
        entry = self._cache.get(key)
        now = self._clock()
        if entry is not None and now - entry.fetched_at < ttl:
            return entry.body
        try:
            body = await self._get(url, headers, timeout)
        except SourceUnavailable:
            if entry is None:
                raise
            log.warning("remote source %s failed; using the copy from %.0f s ago", loggable_url(url),
                        now - entry.fetched_at)
            return entry.body
        self._cache[key] = _Entry(body, now)
        return body

    async def fresh_text(self, url: str, *, timeout: float) -> str | None:
        """The text at `url`, never cached; None (logged) when it fails: callers fail open."""
        try:
            return (await self._get(url, {}, timeout)).decode("utf-8", errors="replace")
        except SourceUnavailable as exc:
            log.warning("context location skipped: %s", exc.message)
            return None

    async def _get(self, url: str, headers: Mapping[str, str], timeout: float) -> bytes:
        shown = loggable_url(url)
        try:
            async with self._http.get(
                url, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                if response.status >= 400:
                    raise SourceUnavailable(f"{shown} answered HTTP {response.status}")
                body = await response.content.read(MAX_REMOTE_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceUnavailable(f"{shown} could not be fetched ({type(exc).__name__})") from exc
        if len(body) > MAX_REMOTE_BYTES:
            raise SourceUnavailable(f"{shown} is larger than {MAX_REMOTE_BYTES} bytes")
        return body
