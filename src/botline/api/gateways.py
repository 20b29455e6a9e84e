"""AI gateway management (seed section AI Gateways), validation against the upstream, usage stats."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from botline.api.http import ApiError, json_response, message_response, not_found, parse_model, query_text, read_model
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import Services, principal, services
from botline.domain.base import CamelModel
from botline.domain.gateways import (
    API_KEY_MASK,
    Gateway,
    GatewayParameters,
    keep_masked_api_key,
    restore_masked_headers,
)
from botline.domain.limits import Name, Patch, PatchOf, partial
from botline.domain.secrets import SecretNeeded
from botline.gateway import completion
from botline.gateway.errors import GatewayError, UpstreamError
from botline.gateway.registry import create_gateway, save_gateway

routes = web.RouteTableDef()
VALIDATION_PROMPT = [{"role": "user", "content": "Reply with the single word: ok"}]
PARAMETERS_PATCH = partial(GatewayParameters)
"""Checks a PATCH's parameters (limits included) before they are merged; built once, at import."""


class GatewayBody(CamelModel):
    name: Name = Field(min_length=1)
    parameters: GatewayParameters


class GatewayPatch(CamelModel):
    """Top-level parameters given here replace the stored ones; a masked or absent apiKey keeps the old one."""

    name: Name | None = Field(default=None, min_length=1)
    parameters: Annotated[Patch, PatchOf((GatewayParameters,))] | None = None


def gateway_view(gateway: Gateway) -> dict[str, Any]:
    return {"id": gateway.id, "name": gateway.name, "slug": gateway.slug, "parameters": gateway.public_parameters(),
            "createdAt": gateway.wire()["createdAt"], "updatedAt": gateway.wire()["updatedAt"]}


def check_bash(svc: Services, parameters: GatewayParameters) -> None:
    """enableBash is refused where the sandbox cannot run (no bubblewrap, no user namespaces, S3 files)."""
    if parameters.enable_bash and svc.sandbox.unavailable:
        raise ApiError(400, f"Invalid value for parameters.enableBash: {svc.sandbox.unavailable}.")


async def _owned(request: web.Request) -> Gateway:
    gateway = await services(request).store.gateways.get(principal(request).account.id, request.match_info["id"])
    if gateway is None:
        raise not_found("AI gateway")
    return gateway


async def _check_upstream(svc: Services, account_id: str, params: GatewayParameters) -> None:
    """400 unless the parameters name exactly one upstream, and a named LLM connection is the account's."""
    problem = params.upstream_problem()
    if problem is not None:
        raise ApiError(400, problem)
    if params.llm_connection_id is not None and \
            await svc.store.llm_connections.get(account_id, params.llm_connection_id) is None:
        raise ApiError(400, "Invalid value for parameters.llmConnectionId: no such LLM connection in this account.")


@routes.post("/api/v1/ai-gateways")
@documented("Create an AI gateway.", body=GatewayBody)
async def create(request: web.Request) -> web.Response:
    body = await read_model(request, GatewayBody)
    await _check_upstream(services(request), principal(request).account.id, body.parameters)
    check_bash(services(request), body.parameters)
    gateway = await create_gateway(services(request).store, principal(request).account.id, body.name, body.parameters)
    return json_response({"aiGatewayId": gateway.id})


@routes.get("/api/v1/ai-gateways")
@documented("List the account's AI gateways.", query={"filter": "Searches name, model, slug and id."})
async def list_gateways(request: web.Request) -> web.Response:
    needle = query_text(request, "filter").strip().lower()
    svc, account_id = services(request), principal(request).account.id
    gateways = await svc.store.gateways.list_for_account(account_id)
    endpoints = {}
    if any(g.parameters.llm_connection_id for g in gateways):
        endpoints = {c.id: c.endpoint for c in await svc.store.llm_connections.list_for_account(account_id)}
    return json_response([
        {"id": g.id, "name": g.name,
         "inferenceEndpoint": g.parameters.base_address or endpoints.get(g.parameters.llm_connection_id or ""),
         "modelName": g.parameters.model_name, "slug": g.slug}
        for g in gateways
        if not needle or any(needle in field.lower() for field in (g.name, g.parameters.model_name, g.slug, g.id))
    ])


@routes.get("/api/v1/ai-gateways/{id}")
@documented("View an AI gateway (apiKey masked).")
async def view(request: web.Request) -> web.Response:
    return json_response(gateway_view(await _owned(request)))


@routes.patch("/api/v1/ai-gateways/{id}")
@documented("Change an AI gateway.", body=GatewayPatch, answer=MessageAnswer)
async def edit(request: web.Request) -> web.Response:
    """Merges the given top-level parameters into the stored ones; a masked or absent apiKey (or header
    value) keeps the old one while its destination is unchanged (domain/secrets.py)."""
    gateway = await _owned(request)
    data = await read_model(request, GatewayPatch)
    patch = data.parameters or {}
    parse_model(PARAMETERS_PATCH, patch, at="parameters")
    stored = gateway.parameters.wire()
    if patch.get("llmConnectionId"):  # moving to a connection: the inline upstream goes unless given again
        stored.pop("baseAddress", None)
        stored.pop("apiKey", None)
    elif "baseAddress" in patch and patch["baseAddress"] is not None:  # moving off a connection
        stored.pop("llmConnectionId", None)
    try:
        merged = {**stored, **restore_masked_headers(patch, stored)}
        if patch.get("apiKey", API_KEY_MASK) == API_KEY_MASK and "baseAddress" in merged:
            merged["apiKey"] = keep_masked_api_key(patch, gateway.parameters)
    except SecretNeeded as exc:
        raise ApiError(400, str(exc)) from None
    body = parse_model(GatewayBody, {"name": data.name or gateway.name, "parameters": merged})
    if "enableBash" in patch:
        check_bash(services(request), body.parameters)
    svc = services(request)
    await _check_upstream(svc, gateway.account_id, body.parameters)
    gateway.name, gateway.parameters = body.name, body.parameters
    await save_gateway(svc.store, gateway, svc.clock)
    await svc.gateways.forget(gateway.id)
    return message_response("AI gateway updated.")


@routes.delete("/api/v1/ai-gateways/{id}")
@documented("Delete an AI gateway.", answer=MessageAnswer)
async def delete(request: web.Request) -> web.Response:
    """Deletes without reading the gateway first, so one saved before a limit it now breaks can still go
    (docs/decisions.md, "Records saved before the hardening limits")."""
    svc = services(request)
    gateway_id = request.match_info["id"]
    if not await svc.store.gateways.delete(principal(request).account.id, gateway_id):
        raise not_found("AI gateway")
    await svc.gateways.forget(gateway_id)
    return message_response("AI gateway deleted.")


@routes.post("/api/v1/ai-gateways/{id}/validate")
@documented("Check an AI gateway with a real, minimal model call.")
async def validate(request: web.Request) -> web.Response:
    """A real, minimal call to the upstream with the stored credentials."""
    gateway = await _owned(request)
    svc = services(request)
    params = gateway.parameters
    try:
        upstream = await svc.upstreams.of(gateway)
    except GatewayError as exc:
        return json_response({"success": False, "message": exc.message})
    client = svc.clients.get(upstream.base_address, upstream.api_key, upstream.trust).with_options(max_retries=0)
    try:
        answer = await completion.complete(
            client, {"model": params.model_name, "messages": VALIDATION_PROMPT, "max_completion_tokens": 16}
        )
    except UpstreamError as exc:
        return json_response({"success": False, "message": exc.message})
    return json_response({"success": True, "message": f"The model {answer.model} answered."})


async def _totals(svc: Services, gateway: Gateway, hours: int | None) -> dict[str, int]:
    since = None if hours is None else svc.clock.now() - timedelta(hours=hours)
    totals = await svc.store.usage.totals(gateway.account_id, gateway_id=gateway.id, since=since)
    return {"requests": totals.requests, "errors": totals.errors, "inputTokens": totals.input_tokens,
            "outputTokens": totals.output_tokens, "totalTokens": totals.total_tokens,
            "policyRequests": totals.policy_requests, "policyInputTokens": totals.policy_input_tokens,
            "policyOutputTokens": totals.policy_output_tokens}


@routes.get("/api/v1/ai-gateways/{id}/stats")
@documented("Usage statistics of an AI gateway.")
async def stats(request: web.Request) -> web.Response:
    gateway = await _owned(request)
    svc = services(request)
    await svc.usage.flush()
    return json_response({"gatewayId": gateway.id, **await _totals(svc, gateway, None),
                          "last24h": await _totals(svc, gateway, 24)})
