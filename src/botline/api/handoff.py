"""Handing a session to a person and back, and a person answering in it (docs/handoff.md).

Beside the seed's "Web Chat Sessions" routes: `POST .../sessions/{session_id}/handoff`, `.../resume`
and `.../messages` (an agent's message), for dashboards and CRMs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from aiohttp import web
from pydantic import Field

from botline.api.http import ApiError, json_response, not_found, read_model
from botline.api.openapi import documented
from botline.api.state import principal, services
from botline.domain.base import CamelModel
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Session
from botline.domain.handoff import MAX_WINDOW_MINUTES, HandoffTrigger, handoff_view
from botline.domain.limits import Name, Text
from botline.engine.handoff import UNTIL_RESUMED
from botline.engine.handoff_owners import channel_of

routes = web.RouteTableDef()

BASE = "/api/v1/web-chat-client/{id}/sessions/{session_id}"
MAX_AGENT_MESSAGE_CHARS = 32_000


class HandoffBody(CamelModel):
    reason: Text | None = None
    agent: Name | None = None
    """Who takes it (shown in the transcript and the notification)."""
    minutes: int | None = Field(default=None, ge=1, le=MAX_WINDOW_MINUTES)
    """How long without an agent message before the bot answers again; default the client's window."""
    until_resumed: bool = False
    """No window: the chat stays with the person until `resume`."""


class ResumeBody(CamelModel):
    agent: Name | None = None


class AgentMessageBody(CamelModel):
    content: Annotated[str, Field(min_length=1, max_length=MAX_AGENT_MESSAGE_CHARS)]
    agent: Name | None = None


async def _session(request: web.Request) -> tuple[Session, ChatClient]:
    svc = services(request)
    account_id = principal(request).account.id
    client = await svc.store.chat_clients.get(account_id, request.match_info["id"])
    if client is None:
        raise not_found("Web chat client")
    session = await svc.store.sessions.get(account_id, request.match_info["session_id"])
    if session is None or session.chat_client_id != client.id or not session.is_live(svc.clock.now()):
        raise not_found("Session")
    return session, client


def _answer(request: web.Request, session: Session | None) -> web.Response:
    if session is None:
        raise not_found("Session")
    now = services(request).clock.now()
    return json_response({"sessionId": session.id, "handoff": handoff_view(session.handoff, now)})


async def _body(request: web.Request, model: type[CamelModel]) -> CamelModel:
    return await read_model(request, model) if request.can_read_body else model()


@routes.post(BASE + "/handoff")
@documented("Hand the session to a person: the bot stops answering it.", body=HandoffBody, body_required=False)
async def hand_off(request: web.Request) -> web.Response:
    session, client = await _session(request)
    body = await _body(request, HandoffBody)
    assert isinstance(body, HandoffBody)
    svc = services(request)
    until: object = UNTIL_RESUMED if body.until_resumed else None
    if body.minutes is not None and not body.until_resumed:
        until = svc.clock.now() + timedelta(minutes=body.minutes)
    stored = await svc.handoff.take(session, client, by=HandoffTrigger.API, reason=body.reason, agent=body.agent,
                                    until=until)
    return _answer(request, stored)


@routes.post(BASE + "/resume")
@documented("Give the session back to the bot: it answers the next message.", body=ResumeBody, body_required=False)
async def resume(request: web.Request) -> web.Response:
    session, client = await _session(request)
    body = await _body(request, ResumeBody)
    assert isinstance(body, ResumeBody)
    stored = await services(request).handoff.resume(session, client, by=HandoffTrigger.API, agent=body.agent)
    return _answer(request, stored)


@routes.post(BASE + "/messages")
@documented("An agent answers in the session (taking it over): stored, and sent on the session's channel.",
            body=AgentMessageBody)
async def agent_message(request: web.Request) -> web.Response:
    session, client = await _session(request)
    body = await read_model(request, AgentMessageBody)
    svc = services(request)
    message = await svc.handoff.operator_message(session, client, body.content, agent=body.agent)
    if message is None:
        raise not_found("Session")
    chat = channel_of(session, client)
    if chat is not None:
        integration = client.integrations.of(chat.integration)
        assert integration is not None
        error = await svc.inbound.deliver(chat, client, integration, body.content, session=session)
        if error is not None:
            raise ApiError(502, f"The message was stored but not delivered: {error.message}")
    return json_response({"messageId": message.id, "sessionId": session.id,
                          "handoff": handoff_view((await svc.store.sessions.get(session.account_id, session.id)
                                                   or session).handoff, svc.clock.now())})
