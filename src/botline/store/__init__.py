"""Persistence: `open_store(url)` picks the backend from the URL scheme."""

from __future__ import annotations

from botline.store.base import ConflictError, Store, StoreError, StoreUnavailable

SQLITE_PREFIX = "sqlite:///"
DEFAULT_REDIS_TIMEOUT_SECONDS = 5.0


async def open_store(
    url: str, *, redis_prefix: str = "botline", redis_max_connections: int = 200,
    redis_timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
) -> Store:
    """Opens the store named by `url`: `sqlite:///path.db` or `redis://host:port/db`."""
    if url.startswith(SQLITE_PREFIX):
        from botline.store.sqlite import SqliteStore

        return await SqliteStore.open(url.removeprefix(SQLITE_PREFIX))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from botline.store.redis import RedisStore

        return await RedisStore.from_url(url, prefix=redis_prefix, max_connections=redis_max_connections,
                                         timeout_seconds=redis_timeout_seconds)
    raise ValueError(f"unsupported storage url {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")


__all__ = ["ConflictError", "Store", "StoreError", "StoreUnavailable", "open_store"]
