"""Messaging integrations of a chat client (seed "Edit/Delete Web Chat Client Integration")."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from botline.api.http import ApiError, json_response, message_response, not_found, parse_model, read_model
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import principal, services
from botline.domain.base import CamelModel
from botline.domain.chat_clients import ChatClient
from botline.domain.integrations import FIELD_OF, MODEL_OF, IntegrationType, keep_masked_secrets, masked
from botline.domain.limits import MAP_MAX, Name, Patch, PatchOf
from botline.domain.secrets import SecretNeeded
from botline.engine.channels import ChannelHub

routes = web.RouteTableDef()


class IntegrationsBody(CamelModel):
    """One integration at a time: `integrationType` names the section of `integrations` that is saved
    (`telegramIntegration`, `zapiIntegration`, `evolutionIntegration`, `kapsoIntegration`,
    `chatwootIntegration`); masked secrets keep the stored ones."""

    integration_type: IntegrationType
    integrations: Annotated[
        dict[Name, Annotated[Patch, PatchOf(tuple(MODEL_OF.values()))] | None], Field(max_length=MAP_MAX)
    ]


def _kind(value: Any) -> IntegrationType:
    try:
        return IntegrationType(value)
    except ValueError:
        names = ", ".join(k.value for k in IntegrationType)
        raise ApiError(400, f"Invalid value for integrationType: must be one of {names}.") from None


def _alias(kind: IntegrationType) -> str:
    field = FIELD_OF[kind]
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


async def integrations_view(hub: ChannelHub, client: ChatClient) -> dict[str, Any]:
    """Every configured integration, secrets masked, with its read-only webhookUrl."""
    return {
        _alias(kind): {**masked(integration), "webhookUrl": await hub.webhook_url(client, kind)}
        for kind, integration in client.integrations.configured()
    }


async def _owned(request: web.Request) -> ChatClient:
    client = await services(request).store.chat_clients.get(principal(request).account.id, request.match_info["id"])
    if client is None:
        raise not_found("Web chat client")
    return client


@routes.put("/api/v1/web-chat-client/{id}/integrations")
@documented("Save a messaging integration and register its webhook.", body=IntegrationsBody)
async def edit_integrations(request: web.Request) -> web.Response:
    client = await _owned(request)
    body = await read_model(request, IntegrationsBody)
    kind = body.integration_type
    section = body.integrations.get(_alias(kind))
    if section is None:
        raise ApiError(400, f"Invalid value for integrations.{_alias(kind)}: an object is required for {kind.value}.")
    stored = client.integrations.of(kind)
    try:
        given = keep_masked_secrets(section, stored, section=_alias(kind))
    except SecretNeeded as exc:
        raise ApiError(400, str(exc)) from None
    integration = parse_model(MODEL_OF[kind], given, at=f"integrations.{_alias(kind)}")
    setattr(client.integrations, FIELD_OF[kind], integration)
    svc = services(request)
    if not await svc.store.chat_clients.set_integration(client.account_id, client.id, kind,
                                                        client.integrations.of(kind)):
        raise not_found("Web chat client")
    await svc.chat_clients.forget(client.id)
    registration = await svc.channels.connect(client, kind)
    return json_response({
        "message": f"{kind.value} integration saved.",
        "webhookUrl": await svc.channels.webhook_url(client, kind),
        "registration": registration.wire(),
    })


@routes.delete("/api/v1/web-chat-client/{id}/integrations/{name}")
@documented("Delete a messaging integration.", answer=MessageAnswer)
async def delete_integration(request: web.Request) -> web.Response:
    client = await _owned(request)
    kind = _kind(request.match_info["name"])
    if client.integrations.of(kind) is None:
        raise not_found(f"{kind.value} integration")
    svc = services(request)
    await svc.channels.disconnect(client, kind)
    setattr(client.integrations, FIELD_OF[kind], None)
    await svc.store.chat_clients.set_integration(client.account_id, client.id, kind, None)
    await svc.chat_clients.forget(client.id)
    return message_response(f"{kind.value} integration deleted.")
