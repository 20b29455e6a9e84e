"""Documents through the HTTP API on SQLite and Redis: JSONL import rules, sync mode, refused files,
upsert by name, browse, get, delete."""

from __future__ import annotations

from typing import Any

from tests.support.knowledge import create_collection, import_jsonl, jsonl, names, wait_indexed
from tests.support.server import RunningServer


async def browse(server: RunningServer, collection_id: str, **params: Any) -> list[dict[str, Any]]:
    status, body = await server.call("GET", f"/api/v1/collections/{collection_id}/documents", params=params)
    assert status == 200, body
    return list(body)


async def test_import_follows_the_seeds_upsert_rules(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    first = jsonl({"docId": "a", "text": "alpha", "__tags": ["x"]}, {"docId": "b", "text": "beta"})
    assert (await import_jsonl(kb_server, c, first))[1] == {"enqueued": 2, "skipped": 0, "deleted": 0}
    await wait_indexed(kb_server, c)
    again = jsonl({"docId": "a", "text": "alpha", "__tags": ["changed"]},  # only tags: skipped
                  {"docId": "b", "text": "beta", "__meta": {"k": 1}},  # only metadata: saved, not re-indexed
                  {"docId": "c", "text": "gamma"})
    assert (await import_jsonl(kb_server, c, again))[1] == {"enqueued": 2, "skipped": 1, "deleted": 0}
    documents = {d["name"]: d for d in await browse(kb_server, c)}
    assert documents["a"]["tags"] == ["x"] and documents["b"]["indexState"] == "Indexed"
    status, b = await kb_server.call("GET", f"/api/v1/collections/{c}/documents/{documents['b']['id']}")
    assert status == 200 and b["metadata"] == {"k": 1}


async def test_sync_mode_deletes_documents_absent_from_the_file(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    await import_jsonl(kb_server, c, jsonl({"docId": "keep", "text": "kept text"},
                                           {"docId": "gone", "text": "old pricing"}))
    await wait_indexed(kb_server, c)
    status, body = await import_jsonl(kb_server, c, jsonl({"docId": "keep", "text": "kept text"}), sync=True)
    assert status == 200 and body == {"enqueued": 0, "skipped": 1, "deleted": 1}
    assert [d["name"] for d in await browse(kb_server, c)] == ["keep"]
    assert await names(kb_server, [c], "pricing", minScore=0.01) == []


async def test_a_bad_line_is_named_and_nothing_of_the_file_is_written(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    await import_jsonl(kb_server, c, jsonl({"docId": "a", "text": "original"}))
    cases = {
        b'{"docId": "a", "text": "changed"}\n{"docId": "b", "text": "new"}\n{"docId": "c"\n': "Line 3: not valid JSON",
        b'{"docId": "a", "text": "changed"}\n\n{"docId": "b", "text": ""}\n': "Line 3: invalid value for text",
        b'{"docId": "a", "text": "x"}\n{"docId": "a", "text": "y"}\n': "Line 2: docId 'a' was already given on line 1",
        b'{"text": "no name"}\n': "Line 1: give the document's name",
        b'{"docId": "b", "text": "t", "__ref": "' + b"r" * 65 + b'"}\n': "Line 1: invalid value for __ref",
        b'{"docId": "b", "text": "t", "__tags": "not a list"}\n': "Line 1: invalid value for __tags",
    }
    for data, message in cases.items():
        status, body = await import_jsonl(kb_server, c, data)
        assert status == 400 and body["message"].startswith(message), body
    assert [(d["name"], d["contentsPreview"]) for d in await browse(kb_server, c)] == [("a", "original")]


async def test_import_needs_the_documents_field(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    status, body = await kb_server.call("POST", f"/api/v1/collections/{c}/documents", json={"documents": []})
    assert status == 415 and "multipart" in body["message"]


async def test_put_upserts_by_name(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    path = f"/api/v1/collections/{c}/documents"
    doc = {"name": "plans", "contents": "O plano Premium custa R$ 99 por mês.", "tags": ["preços"]}
    status, created = await kb_server.call("PUT", path, json=doc)
    assert status == 200 and created["state"] == "Created"
    assert (await kb_server.call("PUT", path, json=doc))[1] == {"documentId": created["documentId"],
                                                                 "state": "NotModified"}
    assert (await kb_server.call("PUT", path, json={**doc, "reference": "site"}))[1]["state"] == "Modified"
    assert (await kb_server.call("PUT", path, json={**doc, "contents": "Custa R$ 109."}))[1]["state"] == "Modified"
    status, body = await kb_server.call("GET", f"{path}/{created['documentId']}")
    assert status == 200 and body["state"] == "Queued" and body["reference"] == "site"
    assert (body["characterCount"], body["wordCount"], body["approximateTokenCount"]) == (13, 3, 4)
    await wait_indexed(kb_server, c)
    status, body = await kb_server.call("GET", f"{path}/{created['documentId']}")
    assert body["state"] == "Indexed" and body["indexedAt"] is not None
    status, body = await kb_server.call("PUT", path, json={"name": "", "contents": "x"})
    assert status == 400 and "name" in body["message"]


async def test_browse_filters_orders_and_pages(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    rows = [("Refund policy", "Money back", ["billing"], "r 1"), ("Shipping", "Entrega", [], None),
            ("Refund form", "Fill the form", ["billing"], "r 1")]
    for name, text, tags, ref in rows:
        await kb_server.call("PUT", f"/api/v1/collections/{c}/documents",
                             json={"name": name, "contents": text, "tags": tags, "reference": ref})
    listed = await browse(kb_server, c, filter='-t billing -r "r 1" -n refund', order_by="created_at_asc")
    assert [d["name"] for d in listed] == ["Refund policy", "Refund form"]
    assert [d["name"] for d in await browse(kb_server, c, order_by="created_at_asc", offset=1, limit=1)] == ["Shipping"]
    assert [d["name"] for d in await browse(kb_server, c, filter="-c FORM")] == ["Refund form"]
    await wait_indexed(kb_server, c)
    assert len(await browse(kb_server, c, state="indexed")) == 3 and await browse(kb_server, c, state="queued") == []
    for params, field in [({"order_by": "sideways"}, "order_by"), ({"filter": "-x y"}, "filter"),
                          ({"filter": '-n "open'}, "filter"), ({"state": "lost"}, "state"), ({"limit": "0"}, "limit")]:
        status, body = await kb_server.call("GET", f"/api/v1/collections/{c}/documents", params=params)
        assert status == 400 and field in body["message"], body


async def test_a_deleted_document_is_never_found_again(kb_server: RunningServer) -> None:
    c = await create_collection(kb_server)
    status, doc = await kb_server.call("PUT", f"/api/v1/collections/{c}/documents",
                                       json={"name": "secret", "contents": "The vault code is kept by Maria."})
    await wait_indexed(kb_server, c)
    assert await names(kb_server, [c], "vault code") == ["secret"]
    status, body = await kb_server.call("DELETE", f"/api/v1/collections/{c}/documents/{doc['documentId']}")
    assert status == 200 and body == {"message": "Document removed."}
    assert await names(kb_server, [c], "vault code", minScore=0.01) == []
    assert (await kb_server.call("GET", f"/api/v1/collections/{c}/documents/{doc['documentId']}"))[0] == 404
