"""API-key authentication with a short in-memory cache, and the middleware that applies it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Middleware

from botline.account_cache import AccountCache
from botline.accounts import hash_key
from botline.domain.accounts import Account, ApiKey
from botline.domain.clock import Clock
from botline.store.base import Store, StoreError
from botline.store.signals import Eviction
from botline.ttl_cache import TtlCache

log = logging.getLogger(__name__)

TOUCH_INTERVAL = timedelta(minutes=1)
"""usedAt is written at most this often per key, off the request path."""
PUBLIC_PREFIXES = ("/api/v1/public/", "/api/v1/webhooks/", "/chat/", "/static/")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/api/v1/auth/login", "/embed.js", "/metrics", "/openapi.json"})
PROTECTED_PREFIXES = ("/api/v1/", "/v1/")
BEARER = "bearer "
QUERY_KEY = "api-key"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account and the key it used."""

    account: Account
    key: ApiKey


PRINCIPAL = web.RequestKey("principal", Principal)


class Authenticator:
    """Resolves secrets to principals; a verified key is trusted from memory for `cache_seconds`.

    The account comes from the AccountCache every keyless path reads too, so one
    `Services.accounts.forget` after an account edit reaches API keys, chat pages, webhooks and
    schedules alike. Deleting a key calls `forget_key`. Either drops this replica's entry at once
    and signals the others to drop theirs (if the signal is lost, theirs expire within the TTL).
    """

    def __init__(self, store: Store, accounts: AccountCache, clock: Clock, *, cache_seconds: float) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._keys: TtlCache[str, ApiKey] = TtlCache(ttl=cache_seconds)
        self._touches: set[asyncio.Task[None]] = set()
        self._key_evictions = Eviction(store.signals, "auth.forget_key", self._drop_key)

    async def start(self) -> None:
        await self._key_evictions.start()

    async def authenticate(self, secret: str) -> Principal | None:
        """The key's principal (its account disabled or not: the caller decides); None for an
        unknown or expired key, or one whose account is gone."""
        key_hash = hash_key(secret)
        key = await self._keys.get(key_hash, lambda: self._store.api_keys.get_by_hash(key_hash))
        now = self._clock.now()
        if key is None or key.is_expired(now):
            return None
        account = await self._accounts.get(key.account_id)
        if account is None:
            return None
        self._touch(key, now)
        return Principal(account=account, key=key)

    async def forget_key(self, key_id: str) -> None:
        await self._key_evictions.evict(key_id)

    def _drop_key(self, key_id: str) -> None:
        self._keys.forget(lambda key: key.id == key_id)

    def _touch(self, key: ApiKey, now: datetime) -> None:
        if key.used_at is not None and now - key.used_at < TOUCH_INTERVAL:
            return
        key.used_at = now
        task = asyncio.create_task(self._write_touch(key.id, now))
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    async def _write_touch(self, key_id: str, used_at: datetime) -> None:
        try:
            await self._store.api_keys.touch(key_id, used_at)
        except StoreError as exc:
            log.warning("could not record key use: %s", exc)

    async def close(self) -> None:
        if self._touches:
            await asyncio.gather(*self._touches, return_exceptions=True)


def _secret_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith(BEARER):
        return header[len(BEARER):].strip() or None
    return request.query.get(QUERY_KEY) or None


def requires_key(path: str) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return False
    return path.startswith(PROTECTED_PREFIXES)


def auth_middleware(
    authenticator_of: Callable[[web.Application], Authenticator],
    unauthorized: Callable[[web.Request, int, str], web.StreamResponse],
) -> Middleware:
    """Attaches the Principal to every protected request; answers 401/403 otherwise."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not requires_key(request.path):
            return await handler(request)
        secret = _secret_of(request)
        principal = await authenticator_of(request.app).authenticate(secret) if secret else None
        if principal is None:
            return unauthorized(request, 401, "Missing or invalid API key.")
        if principal.account.disabled:
            return unauthorized(request, 403, "This account is disabled.")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
