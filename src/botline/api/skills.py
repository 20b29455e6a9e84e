"""Skills of the account (seed section Skills): CRUD, clear, JSONL import (upsert by slug) and export."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from pydantic import BaseModel

from botline.api.http import (
    ApiError,
    check_json_values,
    json_response,
    message_response,
    not_found,
    parse_model,
    read_json,
)
from botline.api.openapi import Answer, MessageAnswer, documented
from botline.api.state import principal, services
from botline.domain.secrets import SecretNeeded
from botline.domain.skills import Skill, SkillBody, keep_masked_headers, masked_view
from botline.store import ConflictError

routes = web.RouteTableDef()
IMPORT_FIELD = "skills"
IMPORT_LINES_MAX = 1_000
"""Lines one JSONL import may hold (each is validated on the event loop)."""
JSONL = "application/jsonl"


class SkillCreated(BaseModel):
    id: str
    message: str


class ImportAnswer(BaseModel):
    enqueued: int
    """Skills created or replaced."""
    skipped: int
    """Lines that were not a valid skill (blank lines are not counted)."""


def _summary(skill: Skill) -> dict[str, Any]:
    return {"id": skill.id, "createdAt": skill.wire()["createdAt"], "slug": skill.slug,
            "description": skill.description, "allowedToolsCount": len(skill.options.allowed_tools_names)}


def _taken(slug: str) -> ApiError:
    return ApiError(409, f"Invalid value for slug: a skill with the slug {slug!r} already exists.")


async def _json_object(request: web.Request) -> dict[str, Any]:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _body(data: dict[str, Any], stored: Skill | None) -> SkillBody:
    try:
        return parse_model(SkillBody, keep_masked_headers(data, stored))
    except SecretNeeded as exc:
        raise ApiError(400, str(exc)) from None


async def _owned(request: web.Request) -> Skill:
    skill = await services(request).store.skills.get(principal(request).account.id, request.match_info["id"])
    if skill is None:
        raise not_found("Skill")
    return skill


@routes.get("/api/v1/skills")
@documented("List the account's skills.")
async def list_skills(request: web.Request) -> web.Response:
    skills = await services(request).store.skills.list_for_account(principal(request).account.id)
    return json_response([_summary(skill) for skill in skills])


@routes.post("/api/v1/skills")
@documented("Create a skill.", body=SkillBody, answer=SkillCreated)
async def create(request: web.Request) -> web.Response:
    svc = services(request)
    body = _body(await _json_object(request), None)
    now = svc.clock.now()
    skill = Skill.of(principal(request).account.id, body, created_at=now, updated_at=now)
    try:
        await svc.store.skills.create(skill)
    except ConflictError:
        raise _taken(body.slug) from None
    return json_response({"id": skill.id, "message": "Skill created."})


@routes.get("/api/v1/skills/{id}")
@documented("View a skill (header values of its instruction sources masked).")
async def view(request: web.Request) -> web.Response:
    return json_response(masked_view(await _owned(request)))


@routes.put("/api/v1/skills/{id}")
@documented("Replace a skill; masked header values keep the stored ones while the source URL is unchanged.",
            body=SkillBody, answer=MessageAnswer)
async def edit(request: web.Request) -> web.Response:
    data = await _json_object(request)  # a bad body is refused before the skill is looked up
    stored = await _owned(request)
    svc = services(request)
    body = _body(data, stored)
    skill = Skill.of(stored.account_id, body, id=stored.id, created_at=stored.created_at, updated_at=svc.clock.now())
    try:
        if not await svc.store.skills.update(skill):
            raise not_found("Skill")
    except ConflictError:
        raise _taken(body.slug) from None
    return message_response("Skill updated.")


@routes.delete("/api/v1/skills/{id}")
@documented("Delete a skill.", answer=MessageAnswer)
async def delete(request: web.Request) -> web.Response:
    if not await services(request).store.skills.delete(principal(request).account.id, request.match_info["id"]):
        raise not_found("Skill")
    return message_response("Skill deleted.")


@routes.delete("/api/v1/skills/management/clear")
@documented("Delete every skill of the account.", answer=MessageAnswer)
async def clear(request: web.Request) -> web.Response:
    count = await services(request).store.skills.clear(principal(request).account.id)
    return message_response(f"{count} skills deleted.")


async def _jsonl(request: web.Request) -> bytes:
    """The uploaded file: the multipart field `skills`, or the body itself (application/jsonl)."""
    if not request.content_type.startswith("multipart/"):
        return await request.read()
    limit = services(request).settings.server.max_body_bytes
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == IMPORT_FIELD:
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > limit:  # multipart parts are streamed: client_max_size does not cap them
                    raise ApiError(413, f"Invalid value for {IMPORT_FIELD}: the file is larger than {limit} bytes.")
            return bytes(data)
    raise ApiError(400, f"Invalid value for {IMPORT_FIELD}: the multipart form has no '{IMPORT_FIELD}' file.")


@routes.post("/api/v1/skills/management/import")
@documented("Import skills from a JSONL file (multipart field 'skills'); upserts by slug.", answer=ImportAnswer,
            body_required=False)
async def import_skills(request: web.Request) -> web.Response:
    """Each line is a skill object (slug, description, instructions, options). A line whose slug exists
    replaces that skill's content; an invalid line is skipped and counted."""
    data = await _jsonl(request)
    check_json_values(request, data)
    lines = [line for line in data.splitlines() if line.strip()]
    if len(lines) > IMPORT_LINES_MAX:
        raise ApiError(413, f"Invalid value for {IMPORT_FIELD}: at most {IMPORT_LINES_MAX} lines per import.")
    svc = services(request)
    account_id = principal(request).account.id
    stored = {skill.slug: skill for skill in await svc.store.skills.list_for_account(account_id)}
    enqueued = skipped = 0
    for line in lines:
        try:
            item = orjson.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not an object")
            body = parse_model(SkillBody, keep_masked_headers(item, stored.get(str(item.get("slug")))))
        except (ValueError, ApiError):  # orjson.JSONDecodeError and SecretNeeded are ValueErrors
            skipped += 1
            continue
        now = svc.clock.now()
        await svc.store.skills.upsert(Skill.of(account_id, body, created_at=now, updated_at=now))
        enqueued += 1
    return json_response({"enqueued": enqueued, "skipped": skipped})


@routes.get("/api/v1/skills/management/export.jsonl")
@documented("Export the account's skills as JSONL (header values masked).",
            answers={200: Answer("One skill per line.", media_type=JSONL)})
async def export(request: web.Request) -> web.Response:
    skills = await services(request).store.skills.list_for_account(principal(request).account.id)
    lines = []
    for skill in skills:
        view = masked_view(skill)
        lines.append(orjson.dumps({key: view[key] for key in ("slug", "description", "instructions", "options")}))
    return web.Response(body=b"".join(line + b"\n" for line in lines), content_type=JSONL,
                        headers={"Content-Disposition": 'attachment; filename="skills.jsonl"'})
