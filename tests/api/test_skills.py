"""The skills API as the seed describes it: CRUD, slug rules, clear, JSONL import (upsert) and export."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from botline.accounts import create_account
from botline.app import STORE
from botline.domain.skills import Skill
from tests.memory.helpers import admin_id, store_of
from tests.support.server import RunningServer

MASK = "********"


def skill(slug: str, **more: Any) -> dict[str, Any]:
    return {"slug": slug, "description": f"{slug} things", "instructions": f"You are a {slug}.", **more}


async def create(server: RunningServer, body: dict[str, Any], key: str | None = None) -> str:
    status, answer = await server.call("POST", "/api/v1/skills", json=body, key=key)
    assert status == 200, answer
    return str(answer["id"])


async def test_create_list_view_edit_delete(server: RunningServer) -> None:
    tools = {"options": {"allowedToolsNames": ["web_search", "open_url"]}}
    skill_id = await create(server, skill("summarizer", **tools))
    await create(server, skill("translator"))
    status, listed = await server.call("GET", "/api/v1/skills")
    assert status == 200
    assert [(s["slug"], s["allowedToolsCount"], s["description"]) for s in listed] == [
        ("summarizer", 2, "summarizer things"), ("translator", 0, "translator things")]
    assert listed[0]["id"] == skill_id and listed[0]["createdAt"]

    status, viewed = await server.call("GET", f"/api/v1/skills/{skill_id}")
    assert status == 200 and viewed["instructions"] == "You are a summarizer."
    assert viewed["options"]["allowedToolsNames"] == ["web_search", "open_url"]

    status, _ = await server.call("PUT", f"/api/v1/skills/{skill_id}", json=skill("brief", instructions="Short."))
    assert status == 200
    status, viewed = await server.call("GET", f"/api/v1/skills/{skill_id}")
    assert (viewed["slug"], viewed["instructions"], viewed["options"]["allowedToolsNames"]) == ("brief", "Short.", [])

    assert (await server.call("DELETE", f"/api/v1/skills/{skill_id}"))[0] == 200
    assert (await server.call("GET", f"/api/v1/skills/{skill_id}"))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/skills/{skill_id}"))[0] == 404


async def test_slug_rules_are_a_400_naming_the_rule(server: RunningServer) -> None:
    for slug in ("has space", "", "x" * 65, "ação", "a/b"):
        status, answer = await server.call("POST", "/api/v1/skills", json=skill(slug))
        assert status == 400, slug
        assert answer["message"].startswith("Invalid value for slug:")
        assert "1 to 64 characters" in answer["message"] and "'_', '.' or '-'" in answer["message"]
    await create(server, skill("Ok_1.2-3"))
    await create(server, skill("x" * 64))
    status, answer = await server.call("POST", "/api/v1/skills", json=skill("Ok_1.2-3"))
    assert status == 409 and "Ok_1.2-3" in answer["message"]
    status, answer = await server.call("POST", "/api/v1/skills", json={"slug": "a"})
    assert status == 400 and "instructions" in answer["message"]
    status, listed = await server.call("GET", "/api/v1/skills")
    assert len(listed) == 2  # nothing half-written


async def test_source_headers_are_masked_and_kept_only_while_the_url_stays(server: RunningServer) -> None:
    source = {"name": "style guide", "url": "https://docs.example.com/style.md", "headers": {"Authorization": "s3"}}
    skill_id = await create(server, skill("writer", options={"instructionSources": [source]}))
    status, viewed = await server.call("GET", f"/api/v1/skills/{skill_id}")
    assert viewed["options"]["instructionSources"][0]["headers"] == {"Authorization": MASK}
    assert (await server.call("PUT", f"/api/v1/skills/{skill_id}", json=viewed))[0] == 400  # id, createdAt...
    body = {k: viewed[k] for k in ("slug", "description", "instructions", "options")}
    assert (await server.call("PUT", f"/api/v1/skills/{skill_id}", json=body))[0] == 200
    stored = await stored_skill(server, skill_id)
    assert stored.options.instruction_sources[0].headers == {"Authorization": "s3"}
    body["options"]["instructionSources"][0]["url"] = "https://evil.example.com/"
    status, answer = await server.call("PUT", f"/api/v1/skills/{skill_id}", json=body)
    assert status == 400 and "options.instructionSources.0.headers.Authorization" in answer["message"]


async def stored_skill(server: RunningServer, skill_id: str) -> Skill:
    found = await store_of(server).skills.get(await admin_id(server), skill_id)
    assert found is not None
    return found


async def test_clear_deletes_only_this_accounts_skills(server: RunningServer) -> None:
    await create(server, skill("a"))
    await create(server, skill("b"))
    status, answer = await server.call("DELETE", "/api/v1/skills/management/clear")
    assert status == 200 and answer["message"].startswith("2 ")
    assert (await server.call("GET", "/api/v1/skills"))[1] == []


async def upload(server: RunningServer, jsonl: bytes) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("skills", jsonl, filename="skills.jsonl", content_type="application/jsonl")
    return await server.call("POST", "/api/v1/skills/management/import", data=form)


async def test_jsonl_import_upserts_by_slug_and_counts_bad_lines(server: RunningServer) -> None:
    existing = await create(server, skill("summarizer"))
    jsonl = b"\n".join([
        orjson.dumps({"slug": "summarizer", "description": "Summarizes text", "instructions": "Be concise.",
                      "options": {"instructionSources": [], "allowedToolsNames": ["web-search"]}}),
        orjson.dumps({"slug": "translator", "description": "Translates text", "instructions": "Translate."}),
        b"",
        b"{not json",
        orjson.dumps({"slug": "bad slug", "instructions": "x"}),
        orjson.dumps(["a list"]),
    ])
    status, answer = await upload(server, jsonl)
    assert status == 200 and answer == {"enqueued": 2, "skipped": 3}
    status, listed = await server.call("GET", "/api/v1/skills")
    assert [(s["slug"], s["allowedToolsCount"]) for s in listed] == [("summarizer", 1), ("translator", 0)]
    assert listed[0]["id"] == existing
    assert (await server.call("GET", f"/api/v1/skills/{existing}"))[1]["instructions"] == "Be concise."


async def test_export_then_import_round_trips_even_with_secret_headers(server: RunningServer) -> None:
    source = {"name": "guide", "url": "https://docs.example.com/g.md", "headers": {"X-Key": "k1"},
              "cacheDuration": 60}
    first = await create(server, skill("writer", options={"instructionSources": [source],
                                                          "allowedToolsNames": ["open_url"]}))
    await create(server, skill("reader"))
    async with server.http.get(server.url + "/api/v1/skills/management/export.jsonl",
                               headers=server.headers()) as response:
        assert response.status == 200 and response.content_type == "application/jsonl"
        exported = await response.read()
    lines = [orjson.loads(line) for line in exported.splitlines()]
    assert [line["slug"] for line in lines] == ["writer", "reader"]
    assert set(lines[0]) == {"slug", "description", "instructions", "options"}
    assert lines[0]["options"]["instructionSources"][0]["headers"] == {"X-Key": MASK}

    assert (await server.call("DELETE", f"/api/v1/skills/{(await find(server, 'reader'))}"))[0] == 200
    status, answer = await upload(server, exported)
    assert status == 200 and answer == {"enqueued": 2, "skipped": 0}
    again = await stored_skill(server, first)
    assert again.options.instruction_sources[0].headers == {"X-Key": "k1"}
    assert again.options.instruction_sources[0].cache_duration == 60
    async with server.http.get(server.url + "/api/v1/skills/management/export.jsonl",
                               headers=server.headers()) as response:
        assert await response.read() == exported


async def find(server: RunningServer, slug: str) -> str:
    listed = (await server.call("GET", "/api/v1/skills"))[1]
    return str(next(s["id"] for s in listed if s["slug"] == slug))


async def test_import_without_the_skills_field_is_a_400(server: RunningServer) -> None:
    form = aiohttp.FormData()
    form.add_field("other", b"{}", filename="x.jsonl")
    status, answer = await server.call("POST", "/api/v1/skills/management/import", data=form)
    assert status == 400 and "skills" in answer["message"]


async def test_another_account_cannot_see_or_change_a_skill(server: RunningServer) -> None:
    assert server.app is not None
    other = (await create_account(server.app[STORE], name="Other")).secret
    skill_id = await create(server, skill("mine"))
    assert (await server.call("GET", f"/api/v1/skills/{skill_id}", key=other))[0] == 404
    assert (await server.call("PUT", f"/api/v1/skills/{skill_id}", key=other, json=skill("x")))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/skills/{skill_id}", key=other))[0] == 404
    assert (await server.call("GET", "/api/v1/skills", key=other))[1] == []
