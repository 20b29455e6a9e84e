"""The vector index contract, on each backend: the Store's embedded index on SQLite and on Redis, and
Qdrant (qdrant-client's local mode, the same client code a Qdrant server is reached with)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from botline.knowledge.qdrant_vectors import QdrantVectors
from botline.store import Store, open_store
from botline.store.vectors import VectorEntry, VectorIndex
from tests.support.redis_server import delete_prefix, unique_prefix

ACCOUNT = "account-v"
MODEL, OTHER_MODEL = "local:test:4", "openai:test:4"


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def doc(name: str) -> str:
    """A document id (a UUID, as botline's are and as Qdrant needs) readable back as `name`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


NAMES: dict[str, str] = {}


def entry(collection: str, name: str, *values: float, version: int = 1) -> VectorEntry:
    NAMES[doc(name)] = name
    return VectorEntry(ACCOUNT, collection, doc(name), version, unit(*values))


@pytest.fixture(params=["sqlite", "redis", "qdrant"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    if request.param == "qdrant":
        qdrant = QdrantVectors(AsyncQdrantClient(location=":memory:"), "test")
        yield qdrant
        await qdrant.close()
        return
    if request.param == "sqlite":
        async with await open_store(f"sqlite:///{tmp_path / 'botline.db'}") as store:
            yield store.vectors
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    try:
        async with await open_store(url, redis_prefix=prefix) as store:
            yield store.vectors
    finally:
        await delete_prefix(url, prefix)


async def ids(index: VectorIndex, collections: list[str], *query: float, model: str = MODEL) -> list[str]:
    return [NAMES[h.document_id] for h in await index.search(collections, unit(*query), model, top=10)]


async def test_nearest_first_with_scores_from_0_to_1(index: VectorIndex) -> None:
    await index.upsert(MODEL, [entry("c1", "near", 1, 0.1, 0, 0), entry("c1", "far", 0.2, 1, 0, 0),
                               entry("c1", "opposite", -1, 0, 0, 0), entry("c2", "elsewhere", 1, 0, 0, 0)])
    hits = await index.search(["c1"], unit(1, 0, 0, 0), MODEL, top=10)
    assert [NAMES[h.document_id] for h in hits] == ["near", "far", "opposite"]
    assert hits[0].score == pytest.approx(float(unit(1, 0.1, 0, 0)[0]), abs=1e-5)
    assert hits[1].score == pytest.approx(float(unit(0.2, 1, 0, 0)[0]), abs=1e-5)
    assert hits[2].score == 0.0  # a negative cosine counts as 0
    assert all(h.collection_id == "c1" and h.version == 1 for h in hits)
    assert await ids(index, ["c1", "c2"], 1, 0, 0, 0) == ["elsewhere", "near", "far", "opposite"]
    assert [NAMES[h.document_id] for h in await index.search(["c1"], unit(1, 0, 0, 0), MODEL, top=1)] == ["near"]
    assert await index.count("c1", MODEL) == 3


async def test_a_replaced_vector_answers_with_its_new_version_and_a_deleted_one_is_gone(index: VectorIndex) -> None:
    await index.upsert(MODEL, [entry("c1", "a", 1, 0, 0, 0), entry("c1", "b", 0, 1, 0, 0)])
    assert await ids(index, ["c1"], 1, 0, 0, 0) == ["a", "b"]  # the matrix is now held
    await index.upsert(MODEL, [entry("c1", "a", 0, 0, 1, 0, version=2)])
    hits = await index.search(["c1"], unit(0, 0, 1, 0), MODEL, top=10)
    assert (NAMES[hits[0].document_id], hits[0].version) == ("a", 2)
    await index.delete("c1", [doc("b")])
    assert await ids(index, ["c1"], 0, 1, 0, 0) == ["a"]
    await index.drop("c1")
    assert await ids(index, ["c1"], 1, 0, 0, 0) == []
    assert await index.count("c1", MODEL) == 0
    await index.upsert(MODEL, [entry("c1", "again", 1, 0, 0, 0)])  # a dropped collection can be filled again
    assert await ids(index, ["c1"], 1, 0, 0, 0) == ["again"]


async def test_another_models_vectors_are_never_mixed_in(index: VectorIndex) -> None:
    await index.upsert(MODEL, [entry("c1", "old-1", 1, 0, 0, 0), entry("c1", "old-2", 0, 1, 0, 0)])
    assert await ids(index, ["c1"], 1, 0, 0, 0, model=OTHER_MODEL) == []  # a query of another model finds nothing
    await index.upsert(OTHER_MODEL, [entry("c1", "new", 1, 0, 0, 0)])
    assert await ids(index, ["c1"], 1, 0, 0, 0, model=OTHER_MODEL) == ["new"]
    assert await ids(index, ["c1"], 1, 0, 0, 0) == []
    assert (await index.count("c1", OTHER_MODEL), await index.count("c1", MODEL)) == (1, 0)


@pytest.fixture(params=["sqlite", "redis"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on the same data, as two replicas have: SQLite's file, or Redis under one prefix."""
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'botline.db'}", "unused"
    else:
        url, prefix = request.getfixturevalue("redis_url"), unique_prefix()
    try:
        async with await open_store(url, redis_prefix=prefix) as first, \
                await open_store(url, redis_prefix=prefix) as second:
            yield first, second
    finally:
        if request.param == "redis":
            await delete_prefix(url, prefix)


async def test_an_older_version_never_overwrites_a_newer_one(replicas: tuple[Store, Store]) -> None:
    """An indexer whose lease ran out may finish after the one that took the newer version over (the
    embedded index keeps the newer; Qdrant's points are last-writer-wins, docs/knowledge.md)."""
    first, second = replicas
    await first.vectors.upsert(MODEL, [entry("c1", "a", 1, 0, 0, 0, version=3)])
    await second.vectors.upsert(MODEL, [entry("c1", "a", 0, 1, 0, 0, version=2)])
    [hit] = await first.vectors.search(["c1"], unit(1, 0, 0, 0), MODEL, top=5)
    assert (hit.version, hit.score) == (3, pytest.approx(1.0))


async def test_every_replica_answers_from_the_acknowledged_vectors(replicas: tuple[Store, Store]) -> None:
    """Each replica holds its own matrices; a write through one is seen by the other's next search,
    a delete and a drop included."""
    first, second = replicas
    await first.vectors.upsert(MODEL, [entry("c1", "a", 1, 0, 0, 0)])
    assert await ids(second.vectors, ["c1"], 1, 0, 0, 0) == ["a"]
    await first.vectors.upsert(MODEL, [entry("c1", "b", 1, 0.1, 0, 0)])
    await first.vectors.delete("c1", [doc("a")])
    assert await ids(second.vectors, ["c1"], 1, 0, 0, 0) == ["b"]
    await first.vectors.drop("c1")
    assert await ids(second.vectors, ["c1"], 1, 0, 0, 0) == []
