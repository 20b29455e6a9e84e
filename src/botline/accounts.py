"""Account and API-key operations shared by the CLI, the start-up bootstrap and the HTTP API."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from botline.domain.accounts import Account, ApiKey, KeyScope
from botline.store.base import Store

KEY_PREFIX = "sk-"
KEY_RANDOM_BYTES = 32
"""token_urlsafe(32) gives 43 url-safe characters: 256 bits of randomness."""
KEY_TAIL_LENGTH = 6
ADMIN_ACCOUNT_NAME = "admin"


def generate_secret(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def new_salt() -> str:
    return secrets.token_urlsafe(24)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def masked(key: ApiKey) -> str:
    return "..." + key.key_tail


@dataclass(frozen=True)
class IssuedKey:
    """A key right after creation: the only moment its secret exists outside the caller."""

    record: ApiKey
    secret: str


class TooManyKeys(Exception):
    """The account holds as many keys as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"This account already has {limit} API keys, the most it may hold "
                         "(auth.max_keys_per_account); delete one first.")


async def issue_key(
    store: Store, account_id: str, *, label: str, expires_at: datetime | None = None, secret: str | None = None,
    limit: int | None = None, scope: KeyScope | None = None,
) -> IssuedKey:
    """Stores the hash of a new (or given) secret for the account; with `limit`, raises TooManyKeys
    (nothing stored) when the account holds that many keys already."""
    secret = secret or generate_secret()
    record = ApiKey(
        account_id=account_id, label=label, key_hash=hash_key(secret), key_tail=secret[-KEY_TAIL_LENGTH:],
        expires_at=expires_at, scope=scope,
    )
    if limit is None:
        await store.api_keys.create(record)
    elif not await store.api_keys.create_within(record, limit=limit):
        raise TooManyKeys(limit)
    return IssuedKey(record=record, secret=secret)


def bounded_expiry(wanted: datetime | None, minting: ApiKey) -> datetime | None:
    """A key made with `minting` never outlives it: the earlier of the two expiries (None: never)."""
    if minting.expires_at is None:
        return wanted
    return minting.expires_at if wanted is None else min(wanted, minting.expires_at)


async def create_account(store: Store, *, name: str, is_admin: bool = False, label: str = "first key") -> IssuedKey:
    """Creates an account and its first API key."""
    account = Account(name=name, is_admin=is_admin, salt=new_salt())
    await store.accounts.create(account)
    return await issue_key(store, account.id, label=label)


async def admin_account(store: Store) -> Account:
    """The bootstrap admin account (the oldest admin), created on first use."""
    for account in await store.accounts.list():
        if account.is_admin:
            return account
    account = Account(name=ADMIN_ACCOUNT_NAME, is_admin=True, salt=new_salt())
    await store.accounts.create(account)
    return account


async def bootstrap_admin_keys(store: Store, configured: list[str]) -> str | None:
    """Makes sure the admin account can be reached.

    Configured keys are registered (hash only) if missing. With none configured and no key in the
    store at all, a new key is created and returned so the caller can show it once.
    """
    admin = await admin_account(store)
    for secret in configured:
        if await store.api_keys.get_by_hash(hash_key(secret)) is None:
            await issue_key(store, admin.id, label="from config", secret=secret)
    if configured or await store.api_keys.count() > 0:
        return None
    return (await issue_key(store, admin.id, label="bootstrap")).secret


def expiry(now: datetime, duration_days: int) -> datetime | None:
    """-1 means never."""
    return None if duration_days < 0 else now + timedelta(days=duration_days)
