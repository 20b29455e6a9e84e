"""Collections through the HTTP API on SQLite and Redis: CRUD, state, reset, re-index, export → import."""

from __future__ import annotations

from tests.api.test_accounts import second_account
from tests.support.knowledge import create_collection, import_jsonl, jsonl, names, wait_indexed
from tests.support.server import RunningServer

DOCS = jsonl(
    {"docId": "refund", "text": "Refunds are paid within 7 days.", "__ref": "billing", "__tags": ["money"]},
    {"docid": "shipping", "text": "Entrega em até 5 dias úteis.", "__meta": {"region": "BR"}},
    {"docId": "warranty", "text": "The warranty lasts two years.", "__ref": "billing"},
)


async def test_create_edit_view_list_and_delete(kb_server: RunningServer) -> None:
    collection_id = await create_collection(kb_server, "FAQ", context="Our support FAQ", tags="faq, support ,faq")
    status, body = await kb_server.call("GET", f"/api/v1/collections/{collection_id}")
    assert status == 200 and body["name"] == "FAQ" and body["tags"] == ["faq", "support"]
    assert body["state"] == {"total": 0, "indexed": 0, "queued": 0, "cancelled": 0}
    status, body = await kb_server.call("PUT", f"/api/v1/collections/{collection_id}",
                                        json={"collectionName": "Help", "tags": "a,b"})
    assert status == 200 and body == {"message": "Collection saved successfully."}
    _, listed = await kb_server.call("GET", "/api/v1/collections")
    assert [(c["name"], c["tags"], c["context"]) for c in listed] == [("Help", ["a", "b"], None)]
    assert (await kb_server.call("DELETE", f"/api/v1/collections/{collection_id}"))[0] == 200
    assert (await kb_server.call("GET", f"/api/v1/collections/{collection_id}"))[0] == 404


async def test_a_collection_is_invisible_to_other_accounts(kb_server: RunningServer) -> None:
    collection_id = await create_collection(kb_server)
    other = await second_account(kb_server)
    assert (await kb_server.call("GET", f"/api/v1/collections/{collection_id}", key=other))[0] == 404
    assert (await import_jsonl(kb_server, collection_id, DOCS, key=other))[0] == 404
    status, body = await kb_server.call("POST", "/api/v1/query", key=other,
                                        json={"term": "refund", "collections": [collection_id]})
    assert status == 404 and collection_id in body["message"]
    assert (await kb_server.call("DELETE", f"/api/v1/collections/{collection_id}", key=other))[0] == 404


async def test_bad_bodies_answer_400_naming_the_field(kb_server: RunningServer) -> None:
    status, body = await kb_server.call("POST", "/api/v1/collections", json={"collectionName": ""})
    assert status == 400 and "collectionName" in body["message"]
    status, body = await kb_server.call("POST", "/api/v1/collections", json={"collectionName": "x" * 300})
    assert status == 400 and "collectionName" in body["message"]


async def test_export_imports_back_into_a_new_collection_unchanged(kb_server: RunningServer) -> None:
    source = await create_collection(kb_server)
    assert (await import_jsonl(kb_server, source, DOCS))[0] == 200
    status, exported = await kb_server.call("GET", f"/api/v1/collections/{source}/export.jsonl")
    assert status == 200 and len(exported.splitlines()) == 3
    copy = await create_collection(kb_server, "Copy")
    status, body = await import_jsonl(kb_server, copy, exported.encode())
    assert status == 200 and body == {"enqueued": 3, "skipped": 0, "deleted": 0}
    copied = (await kb_server.call("GET", f"/api/v1/collections/{copy}/export.jsonl"))[1]
    assert sorted(copied.splitlines()) == sorted(exported.splitlines())
    assert await wait_indexed(kb_server, copy) == {"total": 3, "indexed": 3, "queued": 0, "cancelled": 0}
    assert await names(kb_server, [copy], "garantia warranty") == ["warranty"]


async def test_reset_only_clears_documents_and_keeps_the_collection(kb_server: RunningServer) -> None:
    collection_id = await create_collection(kb_server)
    await import_jsonl(kb_server, collection_id, DOCS)
    await wait_indexed(kb_server, collection_id)
    status, body = await kb_server.call("DELETE", f"/api/v1/collections/{collection_id}/reset-only")
    assert status == 200 and body["removed"] == 3
    assert await names(kb_server, [collection_id], "refunds", minScore=0.01) == []
    assert (await kb_server.call("GET", f"/api/v1/collections/{collection_id}"))[1]["name"] == "FAQ"


async def test_vectors_only_requeues_every_document_and_they_stay_searchable(kb_server: RunningServer) -> None:
    collection_id = await create_collection(kb_server)
    await import_jsonl(kb_server, collection_id, DOCS)
    await wait_indexed(kb_server, collection_id)
    status, body = await kb_server.call("DELETE", f"/api/v1/collections/{collection_id}/vectors-only")
    assert status == 200 and body == {"message": "Outdated documents enqueued.", "enqueued": 3}
    assert await names(kb_server, [collection_id], "refunds") == ["refund"]
    assert (await wait_indexed(kb_server, collection_id))["indexed"] == 3
