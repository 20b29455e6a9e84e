"""Web chat clients and their sessions (seed sections "Web Chat" and "Web Chat Sessions")."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, field_validator

from botline.api.http import ApiError, json_response, message_response, not_found, parse_model, query_text, read_model
from botline.api.integrations import integrations_view
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import Services, principal, services
from botline.domain.base import CamelModel
from botline.domain.chat_clients import ChatClient, ClientParameters, LimitingParameters
from botline.domain.conversations import Session
from botline.domain.handoff import handoff_view
from botline.domain.limits import LongText, Name, Patch, PatchOf, StringMap, Url
from botline.store.changes import ClientSettings

routes = web.RouteTableDef()

DEFAULT_SESSION_SECONDS = 3600
MIN_SESSION_SECONDS = 600
MAX_SESSION_SECONDS = 90 * 24 * 3600
CONTEXT_PREVIEW_CHARS = 120


class ChatClientBody(CamelModel):
    name: Name = Field(min_length=1)
    ai_gateway_id: Name | None = None
    limiting_parameters: LimitingParameters = Field(default_factory=LimitingParameters)
    client_parameters: ClientParameters


class ChatClientPatch(CamelModel):
    """The sections given are merged shallowly into the stored ones (arrays are replaced whole)."""

    name: Name | None = None
    ai_gateway_id: Name | None = None
    limiting_parameters: Annotated[Patch, PatchOf((LimitingParameters,))] | None = None
    client_parameters: Annotated[Patch, PatchOf((ClientParameters,))] | None = None


class SessionBody(CamelModel):
    extra_context: LongText | None = None
    tag: Name | None = None
    expires: float = Field(default=DEFAULT_SESSION_SECONDS, ge=MIN_SESSION_SECONDS, le=MAX_SESSION_SECONDS)
    context_location: Url | None = None
    metadata: StringMap = Field(default_factory=dict)

    @field_validator("context_location")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value or None

    @field_validator("metadata", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        return {} if value is None else value


async def _owned(request: web.Request) -> ChatClient:
    client = await services(request).store.chat_clients.get(principal(request).account.id, request.match_info["id"])
    if client is None:
        raise not_found("Web chat client")
    return client


async def _check_gateway(svc: Services, account_id: str, gateway_id: str | None) -> None:
    if gateway_id and await svc.store.gateways.get(account_id, gateway_id) is None:
        raise ApiError(400, "Invalid value for aiGatewayId: no AI gateway of this account has that id.")


def _check_scripts(svc: Services, scripts: str | None) -> None:
    """customScripts are refused when saved, not only left out when the page is shown: the tenant learns at
    once that they need the operator's webchat.chat_origin, instead of finding a page without them."""
    if scripts and not svc.settings.webchat.chat_origin:
        raise ApiError(400, "Invalid value for clientParameters.customScripts: custom scripts need a chat origin "
                            "apart from the API's (webchat.chat_origin in botline's config); without one they "
                            "would run on the management API's origin.")


def _check_speech(svc: Services, source: str) -> None:
    """An audioSynthesisSource botline cannot speak with is refused when saved, not at chat time."""
    if (problem := svc.speech.source_problem(source)) is not None:
        raise ApiError(400, f"Invalid value for clientParameters.audioSynthesisSource: {problem}.")


def talk_url(svc: Services, session: Session) -> str:
    base = (svc.settings.webchat.chat_origin or "").rstrip("/") or svc.settings.server.base_url
    return f"{base}/chat/{session.access_key}"


@routes.get("/api/v1/web-chat-client")
@documented("List the account's web chat clients.")
async def list_clients(request: web.Request) -> web.Response:
    svc = services(request)
    account_id = principal(request).account.id
    gateways = {g.id: g for g in await svc.store.gateways.list_for_account(account_id)}
    now = svc.clock.now()
    listed = []
    for client in await svc.store.chat_clients.list_for_account(account_id):
        sessions = await svc.store.sessions.list_for_client(account_id, client.id)
        gateway = gateways.get(client.ai_gateway_id or "")
        listed.append({
            "id": client.id, "name": client.name, "color": client.client_parameters.primary_color,
            "activeSessions": sum(1 for s in sessions if s.is_live(now)),
            "associatedGateway": None if gateway is None else {
                "id": gateway.id, "name": gateway.name, "modelName": gateway.parameters.model_name},
        })
    return json_response(listed)


@routes.post("/api/v1/web-chat-client")
@documented("Create a web chat client.", body=ChatClientBody)
async def create_client(request: web.Request) -> web.Response:
    body = await read_model(request, ChatClientBody)
    svc = services(request)
    account_id = principal(request).account.id
    await _check_gateway(svc, account_id, body.ai_gateway_id)
    _check_scripts(svc, body.client_parameters.custom_scripts)
    _check_speech(svc, body.client_parameters.audio_synthesis_source)
    client = ChatClient(
        account_id=account_id, name=body.name, ai_gateway_id=body.ai_gateway_id,
        limiting_parameters=body.limiting_parameters, client_parameters=body.client_parameters,
    )
    await svc.store.chat_clients.create(client)
    return json_response({"id": client.id})


@routes.get("/api/v1/web-chat-client/{id}")
@documented("View a web chat client and its integrations (secrets masked).")
async def view_client(request: web.Request) -> web.Response:
    client = await _owned(request)
    svc = services(request)
    gateway = None
    if client.ai_gateway_id:
        gateway = await svc.store.gateways.get(client.account_id, client.ai_gateway_id)
    return json_response({
        "id": client.id, "name": client.name,
        "aiGateway": None if gateway is None else {"id": gateway.id, "name": gateway.name},
        "limitingParameters": client.limiting_parameters.wire(),
        "clientParameters": client.client_parameters.wire(),
        "integrations": await integrations_view(svc.channels, client),
    })


@routes.put("/api/v1/web-chat-client/{id}")
@documented("Change a web chat client.", body=ChatClientPatch, answer=MessageAnswer)
async def edit_client(request: web.Request) -> web.Response:
    """clientParameters and limitingParameters are merged shallowly; arrays are replaced whole."""
    client = await _owned(request)
    patch = await read_model(request, ChatClientPatch)
    current = client.wire()
    gateway_id = patch.ai_gateway_id if "ai_gateway_id" in patch.model_fields_set else client.ai_gateway_id
    merged: dict[str, Any] = {
        "name": patch.name if patch.name is not None else client.name, "aiGatewayId": gateway_id,
        "clientParameters": {**current["clientParameters"], **(patch.client_parameters or {})},
        "limitingParameters": {**current["limitingParameters"], **(patch.limiting_parameters or {})},
    }
    body = parse_model(ChatClientBody, merged)
    svc = services(request)
    await _check_gateway(svc, client.account_id, body.ai_gateway_id)
    if {"customScripts", "custom_scripts"} & set(patch.client_parameters or {}):  # stored ones: left out at render
        _check_scripts(svc, body.client_parameters.custom_scripts)
    if {"audioSynthesisSource", "audio_synthesis_source"} & set(patch.client_parameters or {}):
        _check_speech(svc, body.client_parameters.audio_synthesis_source)
    settings = ClientSettings(name=body.name, ai_gateway_id=body.ai_gateway_id,
                              limiting_parameters=body.limiting_parameters, client_parameters=body.client_parameters)
    if not await svc.store.chat_clients.edit(client.account_id, client.id, settings):  # integrations untouched
        raise not_found("Web chat client")
    await svc.chat_clients.forget(client.id)
    return message_response("Web chat client updated.")


@routes.delete("/api/v1/web-chat-client/{id}")
@documented("Delete a web chat client and its sessions.", answer=MessageAnswer)
async def delete_client(request: web.Request) -> web.Response:
    """Deletes without reading the client first, so one saved before a limit it now breaks can still go
    (docs/decisions.md, "Records saved before the hardening limits")."""
    svc = services(request)
    account_id, client_id = principal(request).account.id, request.match_info["id"]
    if not await svc.store.chat_clients.delete(account_id, client_id):
        raise not_found("Web chat client")
    await svc.store.sessions.delete_for_client(account_id, client_id)
    await svc.chat_clients.forget(client_id)
    return message_response("Web chat client deleted.")


@routes.post("/api/v1/web-chat-client/{id}/sessions")
@documented("Open (or renew, by tag) a web-chat session.", body=SessionBody, body_required=False)
async def create_session(request: web.Request) -> web.Response:
    """A tag with a live session returns that session, renewed, with its context updated."""
    client = await _owned(request)
    body = await read_model(request, SessionBody) if request.can_read_body else SessionBody()
    svc = services(request)
    session = await svc.sessions.open(
        client, lifetime=timedelta(seconds=body.expires), tag=body.tag, extra_context=body.extra_context,
        context_location=body.context_location, metadata=body.metadata,
    )
    return json_response({"sessionId": session.id, "accessKey": session.access_key, "talkUrl": talk_url(svc, session)})


def _matches(session: Session, needle: str) -> bool:
    fields = (session.id, session.access_key, session.tag or "", session.extra_context or "")
    return any(needle in field.lower() for field in fields)


@routes.get("/api/v1/web-chat-client/{id}/sessions")
@documented("List a web chat client's sessions.", query={"filter": "Searches id, access key, tag and context."})
async def list_sessions(request: web.Request) -> web.Response:
    client = await _owned(request)
    needle = query_text(request, "filter").strip().lower()
    svc = services(request)
    sessions = await svc.store.sessions.list_for_client(client.account_id, client.id)
    now = svc.clock.now()
    return json_response([
        {
            "id": s.id, "tagName": s.tag,
            "contextPreview": (s.extra_context or "")[:CONTEXT_PREVIEW_CHARS] or None,
            "sessionKey": s.access_key, "createdAt": s.wire()["createdAt"], "lastMessage": s.wire()["lastMessageAt"],
            "messageCount": s.message_count, "tokenCount": s.token_count,
            "expiresAt": s.wire()["expiresAt"], "isActive": s.is_live(now),
            "lastDeliveryError": s.last_delivery_error, "handoff": handoff_view(s.handoff, now),
        }
        for s in sessions
        if not needle or _matches(s, needle)
    ])


@routes.delete("/api/v1/web-chat-client/{id}/sessions/{session_id}")
@documented("End and delete a web-chat session.", answer=MessageAnswer)
async def delete_session(request: web.Request) -> web.Response:
    client = await _owned(request)
    svc = services(request)
    session = await svc.store.sessions.get(client.account_id, request.match_info["session_id"])
    if session is None or session.chat_client_id != client.id:
        raise not_found("Session")
    await svc.chat.cancel(session.id)
    await svc.store.sessions.delete(client.account_id, session.id)
    return message_response("Session ended and deleted.")
