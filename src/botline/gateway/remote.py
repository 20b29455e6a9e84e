"""Fetching remote context: instruction sources and function sources (cached), contextLocation (fresh).

Every fetch goes through the egress layer with the trust of the account that saved the URL. Cached
bodies share one byte budget, least recently used dropped first: distinct URLs (`?x=1`, `?x=2`...)
cannot grow the cache past it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from botline.egress import Egress, EgressError, Trust
from botline.gateway.errors import SourceUnavailable
from botline.logs import loggable_url

log = logging.getLogger(__name__)

SOURCE_UNAVAILABLE = "A source this assistant depends on is unavailable right now."
"""What end users are told; the URL and the reason go to the log."""

CacheKey = tuple[str, tuple[tuple[str, str], ...], Trust]


@dataclass
class _Entry:
    body: bytes
    fetched_at: float


class RemoteFetcher:
    """GETs URLs through the egress layer, caching bodies for a per-call TTL within a byte budget."""

    def __init__(self, egress: Egress, *, max_bytes: int, cache_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._egress = egress
        self._max_bytes = max_bytes
        self._cache_bytes = cache_bytes
        self._clock = clock
        self._cache: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._cached_total = 0

    async def cached(self, url: str, *, trust: Trust, headers: Mapping[str, str], ttl: float, timeout: float) -> bytes:
        """The body of `url`, from cache while younger than `ttl` seconds.

        On failure a stale copy is used when there is one (and logged); otherwise SourceUnavailable,
        whose message names no URL (end users may see it).
        """
        key = (url, tuple(sorted(headers.items())), trust)
        entry = self._cache.get(key)
        now = self._clock()
        if entry is not None:
            self._cache.move_to_end(key)
            if now - entry.fetched_at < ttl:
                return entry.body
        try:
            body = await self._get(url, trust, headers, timeout)
        except SourceUnavailable:
            if entry is None:
                raise
            log.warning("remote source %s failed; using the copy from %.0f s ago", loggable_url(url),
                        now - entry.fetched_at)
            return entry.body
        self._keep(key, _Entry(body, now))
        return body

    async def fresh_text(self, url: str, *, trust: Trust, timeout: float) -> str | None:
        """The text at `url`, never cached; None (logged) when it fails: callers fail open."""
        try:
            return (await self._get(url, trust, {}, timeout)).decode("utf-8", errors="replace")
        except SourceUnavailable:
            return None

    def _keep(self, key: CacheKey, entry: _Entry) -> None:
        previous = self._cache.pop(key, None)
        if previous is not None:
            self._cached_total -= len(previous.body)
        if len(entry.body) > self._cache_bytes:
            return
        self._cache[key] = entry
        self._cached_total += len(entry.body)
        while self._cached_total > self._cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached_total -= len(dropped.body)

    async def _get(self, url: str, trust: Trust, headers: Mapping[str, str], timeout: float) -> bytes:
        try:
            response = await self._egress.request(
                "GET", url, trust=trust, headers=headers, max_bytes=self._max_bytes, timeout=timeout
            )
        except EgressError as exc:
            log.warning("remote source %s could not be fetched: %s", loggable_url(url), exc.message)
            raise SourceUnavailable(SOURCE_UNAVAILABLE) from exc
        if not response.ok:
            log.warning("remote source %s answered HTTP %s", loggable_url(url), response.status)
            raise SourceUnavailable(SOURCE_UNAVAILABLE)
        return response.body
