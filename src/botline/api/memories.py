"""Persisted memories of the account (seed section "Memories"): list, view, delete by id or by user."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from botline.api.http import ApiError, json_response, not_found, query_text
from botline.api.openapi import documented
from botline.api.state import principal, services
from botline.domain.memory import Memory, MemoryFormat

routes = web.RouteTableDef()

PREVIEW_CHARS = 120
DELETED = "Memories deleted successfully."
USER_SUFFIX = "@"
"""Bulk deletion drops everything from the first "@" of externalUserId, so "user@device" ids go too."""
FORMATS = ", ".join(f.value for f in MemoryFormat)


def _parse_format(raw: str) -> MemoryFormat:
    for format in MemoryFormat:
        if raw.lower() == format.value.lower():
            return format
    raise ApiError(400, f"Invalid value for format: {raw!r}; accepted values are {FORMATS}.")


def _optional_format(request: web.Request) -> MemoryFormat | None:
    raw = query_text(request, "format").strip()
    return _parse_format(raw) if raw else None


def _required_format(request: web.Request) -> MemoryFormat:
    raw = query_text(request, "format").strip()
    if not raw:
        raise ApiError(400, f"The format query parameter is required when deleting by externalUserId ({FORMATS}).")
    return _parse_format(raw)


def _summary(memory: Memory) -> dict[str, Any]:
    return {"id": memory.id, "externalUserId": memory.external_user_id,
            "content": memory.content[:PREVIEW_CHARS], "format": memory.format.value}


def _matches(memory: Memory, needle: str) -> bool:
    return any(needle in field.lower() for field in (memory.id, memory.content, memory.external_user_id))


@routes.get("/api/v1/memories")
@documented(
    "List the account's memories.",
    query={"format": "Only memories of this format.", "filter": "Searches id, content and user."},
)
async def list_memories(request: web.Request) -> web.Response:
    format = _optional_format(request)
    needle = query_text(request, "filter").strip().lower()
    svc = services(request)
    memories = await svc.store.memories.list_for_account(principal(request).account.id, now=svc.clock.now(),
                                                         format=format)
    return json_response([_summary(m) for m in memories if not needle or _matches(m, needle)])


@routes.get("/api/v1/memories/{id}")
@documented("View a memory.")
async def view_memory(request: web.Request) -> web.Response:
    svc = services(request)
    memory = await svc.store.memories.get(principal(request).account.id, request.match_info["id"],
                                          now=svc.clock.now())
    if memory is None:
        raise not_found("Memory")
    wire = memory.wire()
    return json_response({"id": memory.id, "externalUserId": memory.external_user_id, "content": memory.content,
                          "format": memory.format.value, "createdAt": wire["createdAt"],
                          "expiresAt": wire["expiresAt"]})


@routes.delete("/api/v1/memories")
@documented(
    "Delete one memory (?id=) or a user's memories (?externalUserId=&format=).",
    query={"id": "A memory id.", "externalUserId": "Deletes this user's memories (ignoring all from its first @).",
           "format": "The memories' format; required with externalUserId."},
)
async def delete_memories(request: web.Request) -> web.Response:
    memory_id = query_text(request, "id").strip()
    user = query_text(request, "externalUserId").strip()
    if bool(memory_id) == bool(user):
        raise ApiError(400, "Give exactly one of the id and externalUserId query parameters.")
    svc = services(request)
    account_id, now = principal(request).account.id, svc.clock.now()
    if memory_id:
        format = _optional_format(request)
        memory = await svc.store.memories.get(account_id, memory_id, now=now)
        if memory is None or format not in (None, memory.format):
            raise not_found("Memory")
        removed = int(await svc.store.memories.delete(account_id, memory_id, now=now))
        if not removed:
            raise not_found("Memory")
        return json_response({"message": DELETED, "removedCount": removed,
                              "externalUserId": memory.external_user_id, "format": memory.format.value})
    format = _required_format(request)
    normalised = user.split(USER_SUFFIX, 1)[0]
    if not normalised:
        raise ApiError(400, "Invalid value for externalUserId: nothing is left before its first \"@\".")
    removed = await svc.store.memories.delete_for_user(account_id, normalised, format, now=now)
    return json_response({"message": DELETED, "removedCount": removed, "externalUserId": user,
                          "format": format.value})
