"""The `store` fixture: a test that takes it runs once per backend (SQLite and Redis); `replica` is a
second Store on the same data, as another replica of botline would open it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botline.store import Store, open_store
from tests.support.redis_server import delete_prefix, unique_prefix

BACKENDS = ["sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
async def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(url, Redis prefix) of an empty store: SQLite in a temporary file, or Redis under a prefix of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'botline.db'}", "botline"
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    try:
        yield url, prefix
    finally:
        await delete_prefix(url, prefix)


@pytest.fixture
async def store(store_location: tuple[str, str]) -> AsyncIterator[Store]:
    url, prefix = store_location
    async with await open_store(url, redis_prefix=prefix) as opened:
        yield opened


@pytest.fixture
async def replica(store: Store, store_location: tuple[str, str]) -> AsyncIterator[Store]:
    """Another Store on `store`'s data (opened after it, so the SQLite file is already migrated)."""
    url, prefix = store_location
    async with await open_store(url, redis_prefix=prefix) as opened:
        yield opened
