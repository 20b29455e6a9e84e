"""`X-Request-Nonce` (and MCP `_aiv_nonce`): a bcrypt hash of the account's hook key (its salt), so a
worker, callback or MCP server can check a request came from botline: `bcrypt.checkpw(hook_key, nonce)`.

Rolling the salt changes the hook key, so nonces made before stop verifying. bcrypt costs CPU by
design, so a hash is made in a thread, at the lowest cost factor (the key is 192 random bits: slowness
protects nothing), and reused for `ttl` seconds per account and salt (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import bcrypt

from botline.domain.accounts import Account

BCRYPT_ROUNDS = 4
"""bcrypt's minimum cost factor."""


def make_nonce(hook_key: str) -> str:
    return bcrypt.hashpw(hook_key.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


class RequestNonces:
    def __init__(self, account: Callable[[str], Awaitable[Account | None]], *, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._account = account
        self._ttl = ttl
        self._clock = clock
        self._made: dict[str, tuple[str, str, float]] = {}
        """account id -> (salt, nonce, made at): one entry per account, replaced when the salt rolls."""

    async def of(self, account_id: str) -> str | None:
        """A nonce for the account's requests, or None when the account is unknown (no hook key)."""
        account = await self._account(account_id)
        if account is None or not account.salt:
            return None
        made = self._made.get(account_id)
        if made is not None and made[0] == account.salt and self._clock() - made[2] < self._ttl:
            return made[1]
        nonce = await asyncio.to_thread(make_nonce, account.salt)
        self._made[account_id] = (account.salt, nonce, self._clock())
        return nonce
