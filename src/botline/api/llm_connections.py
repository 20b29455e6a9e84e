"""LLM connections under /api/v1/ai/llm, in Flashback's shapes and envelopes (`{success, ...}`), so
Flashback's own client pointed at `{base}/api/v1/` works. docs/governance.md has the reference."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import openai
from aiohttp import web
from pydantic import BaseModel, Field

from botline.api.http import ApiError, json_response, query_text, read_model
from botline.api.openapi import documented
from botline.api.state import Services, principal, services
from botline.domain.gateways import Gateway
from botline.domain.limits import Name
from botline.domain.llm_connections import (
    DEFAULT_ENDPOINTS,
    STAT_FIELDS,
    AiType,
    ConnectionStats,
    LlmConnection,
    LlmConnectionBody,
    LlmConnectionPatch,
)
from botline.domain.secrets import MASK, same_destination
from botline.gateway import completion
from botline.gateway.errors import UpstreamError
from botline.gateway.upstream import raise_upstream
from botline.store.base import ConflictError
from botline.store.changes import ConnectionChange

routes = web.RouteTableDef()
BASE = "/api/v1/ai/llm"
VALIDATION_PROMPT = [{"role": "user", "content": "Reply with the single word: ok"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ValidateBody(BaseModel):
    """Optional: with a model name, /validate makes a one-word chat completion with it; without, it
    lists the provider's models (no tokens spent)."""

    model_name: Name | None = Field(default=None, alias="modelName")


def flashback(handler: Handler) -> Handler:
    """Errors in Flashback's envelope: `{success: false, message}` with the status."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response({"success": False, "message": exc.message}, status=exc.status, headers=exc.headers)

    return wrapped


def _endpoint_of(ai_type: AiType, endpoint: str | None) -> str:
    if endpoint:
        return endpoint
    default = DEFAULT_ENDPOINTS.get(ai_type)
    if default is None:
        raise ApiError(400, f"Invalid value for endpoint: required for aiType {ai_type.value}.")
    return default


async def _owned(request: web.Request) -> LlmConnection:
    connection = await services(request).store.llm_connections.get(
        principal(request).account.id, request.match_info["id"])
    if connection is None:
        raise ApiError(404, "LLM connection not found.")
    return connection


def _name_taken(name: str) -> ApiError:
    return ApiError(409, f"An LLM connection named {name!r} exists already in this account.")


@routes.post(BASE)
@documented("Create an LLM connection (Flashback POST /ai/llm).", body=LlmConnectionBody)
@flashback
async def create(request: web.Request) -> web.Response:
    body = await read_model(request, LlmConnectionBody)
    connection = LlmConnection(
        account_id=principal(request).account.id, name=body.name, ai_type=body.ai_type,
        endpoint=_endpoint_of(body.ai_type, body.endpoint), key=body.key, secret=body.secret,
    )
    try:
        await services(request).store.llm_connections.create(connection)
    except ConflictError:
        raise _name_taken(body.name) from None
    return json_response({"success": True, "aiLlmId": connection.id, "message": "LLM connection created."})


@routes.get(BASE)
@documented("List the account's LLM connections (secrets always null).", query={
    "workspaceId": "Flashback's filter: botline's workspace is the account, so another id lists nothing.",
    "aiType": "Only connections of this provider type.", "filter": "Searches name, endpoint and id."})
@flashback
async def list_connections(request: web.Request) -> web.Response:
    account_id = principal(request).account.id
    workspace = query_text(request, "workspaceId")
    ai_type = query_text(request, "aiType").upper()
    needle = query_text(request, "filter").strip().lower()
    found = [] if workspace and workspace != account_id else [
        c for c in await services(request).store.llm_connections.list_for_account(account_id)
        if (not ai_type or c.ai_type.value == ai_type)
        and (not needle or any(needle in text.lower() for text in (c.name, c.endpoint, c.id)))
    ]
    return json_response({"success": True, "aiLlms": [c.view() for c in found]})


@routes.get(f"{BASE}/available")
@documented("The account's connections whose last validation succeeded, newest first.")
@flashback
async def available(request: web.Request) -> web.Response:
    connections = await services(request).store.llm_connections.list_for_account(principal(request).account.id)
    ready = sorted((c for c in connections if c.available), key=lambda c: (c.created_at, c.id), reverse=True)
    return json_response({"success": True, "aiLlms": [c.view() for c in ready]})


@routes.get(f"{BASE}/stats")
@documented("Usage counters per connection (Flashback's stats; counts are strings).",
            query={"aiLlmId": "Only this connection."})
@flashback
async def stats(request: web.Request) -> web.Response:
    svc = services(request)
    await svc.meter.flush()
    account_id = principal(request).account.id
    wanted = query_text(request, "aiLlmId")
    counters = await svc.store.llm_connections.stats(account_id)
    connections = await svc.store.llm_connections.list_for_account(account_id)
    return json_response({"success": True, "stats": [
        _stats_view(c.id, counters.get(c.id, ConnectionStats())) for c in connections if wanted in ("", c.id)
    ]})


def _stats_view(connection_id: str, counters: ConnectionStats) -> dict[str, str]:
    names = {name: "total" + "".join(part.title() for part in name.split("_")) for name in STAT_FIELDS}
    names["llm_tokens_in"], names["llm_tokens_out"] = "totalLlmTokensIn", "totalLlmTokensOut"
    names["policy_violations"] = "totalPolicyViolations"
    view = {"aiLlmId": connection_id}
    view.update({names[name]: str(getattr(counters, name)) for name in STAT_FIELDS})
    return view


@routes.put(f"{BASE}/{{id}}")
@documented("Change an LLM connection; the gateways using it follow at once.", body=LlmConnectionPatch)
@flashback
async def update(request: web.Request) -> web.Response:
    """Given fields replace the stored ones (`endpoint: null` takes the aiType's default; a masked or
    absent key/secret keeps the stored one). A new endpoint needs the credential sent again: a stored
    secret never follows a new address (docs/security.md). Any change of where or how it connects
    clears the validation (the connection leaves `available` until validated again)."""
    stored = await _owned(request)
    patch = await read_model(request, LlmConnectionPatch)
    given = patch.model_dump(exclude_unset=True, exclude={"api_key_uuid"})
    for secret_field in ("key", "secret"):
        if given.get(secret_field) == MASK:
            given.pop(secret_field)
    if "endpoint" in given:  # null: the (new) aiType's default endpoint
        given["endpoint"] = _endpoint_of(given.get("ai_type", stored.ai_type), given["endpoint"])
    moved = not same_destination(stored.endpoint, given.get("endpoint", stored.endpoint))
    if moved and stored.credential and "key" not in given and "secret" not in given:
        raise ApiError(400, "Invalid value for secret: send it again when the endpoint changes "
                            "(a stored secret never follows a new address).")
    if {"endpoint", "key", "secret", "ai_type"} & given.keys():
        given.update(validated_at=None, validation_error=None)
    given["updated_at"] = services(request).clock.now()
    svc = services(request)
    try:
        changed = await svc.store.llm_connections.change(stored.account_id, stored.id, ConnectionChange(given))
    except ConflictError:
        raise _name_taken(str(given.get("name"))) from None
    if changed is None:
        raise ApiError(404, "LLM connection not found.")
    await svc.connections.forget(stored.id)
    return json_response({"success": True, "aiLlmId": stored.id, "message": "LLM connection updated."})


@routes.delete(f"{BASE}/{{id}}")
@documented("Delete an LLM connection (409 naming the gateways that still use it, or when it is the policy judge's).")
@flashback
async def delete(request: web.Request) -> web.Response:
    svc = services(request)
    account_id, connection_id = principal(request).account.id, request.match_info["id"]
    users = [g for g in await svc.store.gateways.list_for_account(account_id)
             if g.parameters.llm_connection_id == connection_id]
    if users:
        return _in_use(users)
    account = await svc.store.accounts.get(account_id)
    if account is not None and account.parameters.governance.judge_connection_id == connection_id:
        raise ApiError(409, "The LLM connection is the account's policy judge: choose another judge first "
                            "(PUT /api/v1/policy/settings).")
    if not await svc.store.llm_connections.delete(account_id, connection_id):
        raise ApiError(404, "LLM connection not found.")
    await svc.connections.forget(connection_id)
    return json_response({"success": True, "message": "LLM connection deleted."})


def _in_use(gateways: list[Gateway]) -> web.Response:
    names = ", ".join(f"{g.name!r} ({g.id})" for g in gateways)
    return json_response({
        "success": False, "message": f"The LLM connection is used by AI gateways {names}: point them elsewhere first.",
        "gateways": [{"id": g.id, "name": g.name} for g in gateways],
    }, status=409)


@routes.post(f"{BASE}/{{id}}/validate")
@documented("Check an LLM connection with a real call to the provider (200 with success:false on failure).",
            body=ValidateBody, body_required=False, upstream=True)
@flashback
async def validate(request: web.Request) -> web.Response:
    connection = await _owned(request)
    svc = services(request)
    model_name = (await read_model(request, ValidateBody)).model_name if request.can_read_body else None
    client = svc.clients.get(connection.endpoint, connection.credential,
                             await svc.accounts.trust(connection.account_id)).with_options(max_retries=0)
    try:
        detail = await _probe(client, model_name)
    except UpstreamError as exc:
        message = _scrubbed(f"Validation failed: {exc.message}", connection)
        await _record(svc, connection, error=message)
        return json_response({"success": False, "message": message})
    await _record(svc, connection, error=None)
    return json_response({"success": True, "message": f"LLM connection validated: {detail}"})


async def _probe(client: openai.AsyncOpenAI, model_name: str | None) -> str:
    if model_name:
        answer = await completion.complete(
            client, {"model": model_name, "messages": VALIDATION_PROMPT, "max_completion_tokens": 16})
        return f"the model {answer.model} answered."
    try:
        page = await client.models.list()
    except openai.OpenAIError as exc:
        raise_upstream(exc)
    return f"the provider lists {len(page.data)} models."


def _scrubbed(text: str, connection: LlmConnection) -> str:
    """A provider may quote the credential it refused: never pass it on."""
    for secret in (connection.secret, connection.key):
        if secret:
            text = text.replace(secret, MASK)
    return text


async def _record(svc: Services, connection: LlmConnection, *, error: str | None) -> None:
    values: dict[str, Any] = {"validated_at": None if error else svc.clock.now(), "validation_error": error}
    await svc.store.llm_connections.change(connection.account_id, connection.id, ConnectionChange(values))
    await svc.connections.forget(connection.id)
