"""Knowledge helpers for tests: a botline on each backend, collections, JSONL imports, waiting for the indexer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server

INDEXED_DEADLINE = 10.0
POLL = 0.01


@pytest.fixture(params=["sqlite", "redis"])
async def kb_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running botline on SQLite, then on Redis under a prefix of its own."""
    if request.param == "sqlite":
        async with running_server(make_settings(f"sqlite:///{tmp_path / 'botline.db'}")) as server:
            yield server
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    try:
        async with running_server(make_settings(url, storage={"url": url, "redis_prefix": prefix})) as server:
            yield server
    finally:
        await delete_prefix(url, prefix)


async def create_collection(server: RunningServer, name: str = "FAQ", key: str | None = None, **body: Any) -> str:
    status, answer = await server.call("POST", "/api/v1/collections", key=key, json={"collectionName": name, **body})
    assert status == 200, answer
    return str(answer["collectionId"])


def jsonl(*lines: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


async def import_jsonl(
    server: RunningServer, collection_id: str, data: bytes, *, sync: bool = False, key: str | None = None,
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("documents", data, filename="docs.jsonl", content_type="application/jsonl")
    if sync:
        form.add_field("insert-mode", "sync")
    return await server.call("POST", f"/api/v1/collections/{collection_id}/documents", key=key, data=form)


async def wait_indexed(server: RunningServer, collection_id: str, key: str | None = None) -> dict[str, int]:
    """Polls the collection (as a user would) until nothing is queued."""
    async with asyncio.timeout(INDEXED_DEADLINE):
        while True:
            status, body = await server.call("GET", f"/api/v1/collections/{collection_id}", key=key)
            assert status == 200, body
            if body["state"]["queued"] == 0:
                return dict(body["state"])
            await asyncio.sleep(POLL)


async def query(server: RunningServer, collections: list[str], *terms: str, key: str | None = None,
                **options: Any) -> list[dict[str, Any]]:
    status, body = await server.call("POST", "/api/v1/query", key=key,
                                     json={"terms": list(terms), "collections": collections, **options})
    assert status == 200, body
    return list(body)


async def names(server: RunningServer, collections: list[str], *terms: str, **options: Any) -> list[str]:
    return [r["documentName"] for r in await query(server, collections, *terms, **options)]
