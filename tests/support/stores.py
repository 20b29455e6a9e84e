"""The `store` fixture: a test that takes it runs once per backend (SQLite and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botline.store import Store, open_store
from tests.support.redis_server import delete_prefix, unique_prefix

BACKENDS = ["sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store: SQLite in a temporary file, or Redis under a prefix of its own."""
    if request.param == "sqlite":
        async with await open_store(f"sqlite:///{tmp_path / 'botline.db'}") as opened:
            yield opened
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    try:
        async with await open_store(url, redis_prefix=prefix) as opened:
            yield opened
    finally:
        await delete_prefix(url, prefix)
