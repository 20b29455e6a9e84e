"""The public chat API (seed section "Web Chat Client"): the accessKey in the path is the credential."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import Field, field_validator

from botline.api.culture import CULTURES, pick_language
from botline.api.http import ApiError, json_response, message_response, parse_model, query_text, read_json
from botline.api.openapi import Access, MessageAnswer, documented
from botline.api.sse import SseStream, event_frame, loop_pinger
from botline.api.state import services
from botline.domain.base import CamelModel
from botline.domain.chat_clients import ChatClient, SpeechTrigger
from botline.domain.conversations import Message, MessageStatus, Role, Session
from botline.domain.handoff import handoff_view
from botline.domain.limits import ITEMS_MAX, BodyBounded, Items
from botline.engine.attachments import AttachmentError, is_spoken, reader_for
from botline.engine.chat import INTERRUPTED, ActiveTurn, ChatRefused, TurnOutcome, is_visible
from botline.gateway.caller import CallSource
from botline.gateway.reasoning import ReasoningPolicy

routes = web.RouteTableDef()

BASE = "/api/v1/public/chat-clients/{access_key}"
MAX_PROMPT_CHARS = 32_000
EVENT_STREAM = "text/event-stream"
UNAVAILABLE = "This chat is unavailable."
"""What anyone holding the link learns of a disabled account: nothing more."""
LAST_EVENTS = ("done", "error")
WEB_SPEECH_DEFAULT = SpeechTrigger.ALWAYS
"""The web chat speaks every answer unless the client says otherwise (the page has a mute toggle)."""
LIVE_STREAM_SECONDS = 300.0
"""How long one /events stream stays open; the page's EventSource then reconnects, which checks the
session (expired, account disabled) again."""
LIVE_CHECK_SECONDS = 15.0
"""How often an idle stream checks that its page is still connected (aiohttp does not cancel the handler)."""
LIVE_ENDPOINT = "webchat-live"
NEW_MESSAGES_FRAME = event_frame("messages", b"{}")


UploadPart = Annotated[dict[str, Any], BodyBounded("an upload: webchat.max_upload_bytes caps each file")]


class PromptMessage(CamelModel):
    role: str = Field(max_length=16, pattern="^user$")  # pydantic-core runs patterns with Rust's linear engine
    content: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | Items[UploadPart]

    @field_validator("content", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        """The limits of both forms checked first, so the 400 names `prompt.content` (a failed union would
        report each form it tried)."""
        if isinstance(value, str) and len(value) > MAX_PROMPT_CHARS:
            raise ValueError(f"must have at most {MAX_PROMPT_CHARS} characters")
        if isinstance(value, list) and len(value) > ITEMS_MAX:
            raise ValueError(f"must have at most {ITEMS_MAX} parts")
        if not isinstance(value, str | list):
            raise ValueError("must be a string or a list of content parts")
        return value


class PromptBody(CamelModel):
    prompt: PromptMessage


async def chat_session(request: web.Request) -> tuple[Session, ChatClient]:
    svc = services(request)
    session = await svc.sessions.live_by_access_key(request.match_info["access_key"])
    if session is None:
        raise ApiError(404, "This chat session does not exist or has expired.")
    if await svc.accounts.active(session.account_id) is None:
        raise ApiError(403, UNAVAILABLE)
    client = await svc.chat_clients.get(session.account_id, session.chat_client_id)
    if client is None:
        raise ApiError(422, "The chat client is not available.")
    return session, client


def _message_view(message: Message, *, audio: bool = False, reasoning: bool = False,
                  media: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {"role": message.role.value, "content": message.content, "message_id": message.id}
    if media:  # the answer's kept images and files (engine/answer_files.py)
        view["media"] = media
    if message.agent:  # a person of the business wrote it (docs/handoff.md)
        view["agent"] = message.agent
    if reasoning and message.reasoning:
        view["reasoning"] = message.reasoning
    if message.status is not MessageStatus.COMPLETE:
        view["status"] = message.status.value
    if message.documents:  # the knowledge the answer used, listed under it
        view["documents"] = [d.shown() for d in message.documents]
    if audio:
        view["audio"] = True
    return view


def spoken(client: ChatClient, answer: Message, *, user_spoke: bool) -> bool:
    """Whether an answer has audio: a complete assistant text the client's trigger speaks."""
    return (answer.role is Role.ASSISTANT and answer.status is MessageStatus.COMPLETE
            and isinstance(answer.content, str) and bool(answer.content.strip())
            and client.client_parameters.speaks_after(user_spoke=user_spoke, channel_default=WEB_SPEECH_DEFAULT))


def _views(messages: list[Message], client: ChatClient, *, reasoning: bool,
           media: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The visible messages; `reasoning`: the stored thinking is shown (the gateway's flags); `media`: kept
    files per message id."""
    views, user_spoke = [], False
    for message in messages:
        if message.role is Role.USER:
            user_spoke = is_spoken(message.content)
        if is_visible(message):
            views.append(_message_view(message, audio=spoken(client, message, user_spoke=user_spoke),
                                       reasoning=reasoning, media=media.get(message.id)))
    return views


def client_view(client: ChatClient) -> dict[str, Any]:
    params = client.client_parameters
    return {
        "customScripts": params.custom_scripts, "customStyles": params.custom_styles,
        "helloLabel": params.hello_label, "helloSubLabel": params.hello_sub_label,
        "logoImageUrl": params.logo_image_url, "primaryColor": params.primary_color,
        "inputModes": [mode.value for mode in params.input_modes], "pageTitle": params.page_title,
        "suggestionButtons": [b.wire() for b in params.suggestion_buttons], "debug": params.debug,
        "showToolCalls": params.show_tool_calls, "textAreaPlaceholder": params.text_area_placeholder,
        "audioSynthesisEnabled": params.audio_synthesis_source not in ("None", ""),
        "languageCode": params.language_code,
    }


def _chat_title(messages: list[Message], client: ChatClient) -> str:
    first = next((m.content for m in messages if m.role.value == "user" and isinstance(m.content, str)), None)
    return first[:60] if first else client.client_parameters.page_title


@routes.get(BASE)
@documented("The chat page's data: messages, culture, client settings.", access=Access.ACCESS_KEY)
async def session_info(request: web.Request) -> web.Response:
    session, client = await chat_session(request)
    svc = services(request)
    messages = await svc.store.messages.list(session.id)
    language = pick_language(client.client_parameters.language_code, request)
    gateway = await svc.gateways.find(client.account_id, client.ai_gateway_id) if client.ai_gateway_id else None
    return json_response({
        "messages": _views(messages, client, reasoning=gateway is not None and ReasoningPolicy.of(
            gateway.parameters).shown, media=await svc.answer_files.by_message(session.id)),
        "chatTitle": _chat_title(messages, client),
        "culture": {"languageCode": language, **CULTURES[language]},
        "client": client_view(client),
        "chatCreationData": None,
        "expiresAt": session.wire()["expiresAt"],
    })


def _refusal(exc: ChatRefused | AttachmentError) -> ApiError:
    retry_after = exc.retry_after if isinstance(exc, ChatRefused) else None
    headers = {"Retry-After": str(int(retry_after))} if retry_after else None
    return ApiError(exc.status, exc.message, headers=headers)


def _wants_stream(request: web.Request) -> bool:
    return query_text(request, "stream").lower() in ("1", "true") or EVENT_STREAM in request.headers.get("Accept", "")


@routes.post(BASE + "/prompt")
@documented(
    "Send a message; the answer comes whole, or as SSE events with ?stream=true.", access=Access.ACCESS_KEY,
    body=PromptBody, query={"stream": "`true` answers with SSE events (also when Accept is text/event-stream)."},
    upstream=True,
)
async def prompt(request: web.Request) -> web.StreamResponse:
    session, client = await chat_session(request)
    data = await read_json(request)
    body = parse_model(PromptBody, data)
    content = body.prompt.content
    text = content if isinstance(content, str) else "".join(
        str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text")
    if len(text) > MAX_PROMPT_CHARS or (not text.strip() and (isinstance(content, str) or not content)):
        raise ApiError(400, f"Invalid value for prompt.content: the message must have between 1 and "
                            f"{MAX_PROMPT_CHARS} characters.")
    svc = services(request)
    try:
        reader = reader_for(client, svc.transcriber, svc.documents,
                            max_upload_bytes=svc.settings.webchat.max_upload_bytes)
        turn = await svc.chat.submit(session, client, body.prompt.content, reader)
    except (ChatRefused, AttachmentError) as exc:
        raise _refusal(exc) from exc
    user_spoke = is_spoken(body.prompt.content)
    if _wants_stream(request):
        return await _stream(request, turn, client, user_spoke=user_spoke)
    outcome = await _outcome(turn)
    summary = outcome.summary(include_tools=client.client_parameters.show_tool_calls)
    summary["audio"] = spoken(client, outcome.message, user_spoke=user_spoke)
    return json_response(summary)


async def _outcome(turn: ActiveTurn) -> TurnOutcome:
    """The turn's result; it keeps running if this request goes away (it is shielded)."""
    try:
        return await asyncio.shield(turn.task)
    except ChatRefused as exc:
        raise _refusal(exc) from exc
    except asyncio.CancelledError:
        if turn.task.cancelled():  # the server abandoned the turn at shutdown, not this request's cancel
            raise ApiError(503, INTERRUPTED) from None
        raise


async def _stream(request: web.Request, turn: ActiveTurn, client: ChatClient, *, user_spoke: bool
                  ) -> web.StreamResponse:
    """`event: delta|tool|done|error`; opened at the first event, so a refusal is still a plain 4xx.

    The events queued since the last write (all the deltas of one upstream read) go out in one write.
    `done` carries `audio: true` when the answer is spoken: the page then fetches its audio, so
    synthesis starts only once the whole text is on screen (and not at all when the page is muted).
    """
    stream = SseStream(request, open_streams=services(request).metrics.open_streams(CallSource.WEB_CHAT.channel),
                       pinger=loop_pinger())
    try:
        while True:
            events = [await turn.events.get()]
            while events[-1].name not in LAST_EVENTS and not turn.events.empty():
                events.append(turn.events.get_nowait())
            if events[0].name == "error" and not stream.opened:
                await _outcome(turn)  # raises the refusal or gateway error as a plain answer
            if events[-1].name == "done":
                done = events[-1].data
                done["audio"] = not done.get("cancelled") and bool(str(done.get("completionText") or "").strip()) \
                    and client.client_parameters.speaks_after(user_spoke=user_spoke, channel_default=WEB_SPEECH_DEFAULT)
            await stream.frames([event_frame(event.name, orjson.dumps(event.data)) for event in events])
            if events[-1].name in LAST_EVENTS:
                break
    except ConnectionResetError:
        pass  # the page went away; the turn finishes and is stored anyway
    finally:
        await stream.close()
    return stream.response


@routes.get(BASE + "/events")
@documented("Server-sent events for an open chat page: `messages` when an agent or a scheduled continuation "
            "wrote in the session (fetch the session to get them).", access=Access.ACCESS_KEY,
            media_type=EVENT_STREAM)
async def live_events(request: web.Request) -> web.StreamResponse:
    """Agent messages reach the page at once, on any replica (a store signal wakes the stream that holds
    the page); the page's poll stays as the fallback for a missed signal."""
    session, _ = await chat_session(request)
    svc = services(request)
    stream = SseStream(request, open_streams=svc.metrics.open_streams(LIVE_ENDPOINT), pinger=loop_pinger())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVE_STREAM_SECONDS
    try:
        with svc.chat.live.watch(session.id) as news:
            await stream.open()
            while (left := deadline - loop.time()) > 0 and not _gone(request):
                try:
                    await asyncio.wait_for(news.wait(), timeout=min(left, LIVE_CHECK_SECONDS))
                except TimeoutError:
                    continue  # looks again whether the page is still there
                if svc.chat.live.closing:
                    break
                news.clear()
                await stream.frames([NEW_MESSAGES_FRAME])
    except ConnectionResetError:
        pass  # the page went away
    finally:
        await stream.close()
    return stream.response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@routes.delete(BASE)
@documented("Cancel the answer being written.", access=Access.ACCESS_KEY, answer=MessageAnswer)
async def cancel(request: web.Request) -> web.Response:
    session, _ = await chat_session(request)
    await services(request).chat.cancel(session.id)
    return message_response("Inference cancelled.")


@routes.post(BASE + "/retry")
@documented("Drop the last answer so the last user message can be sent again.", access=Access.ACCESS_KEY, status=204)
async def retry(request: web.Request) -> web.Response:
    session, _ = await chat_session(request)
    if not await services(request).chat.retry(session):
        raise ApiError(400, "There is no user message to retry.")
    return web.Response(status=204)


@routes.post(BASE + "/reset")
@documented("Empty the conversation.", access=Access.ACCESS_KEY, status=204)
async def reset(request: web.Request) -> web.Response:
    """Empties the conversation ("New conversation"); the session and its key stay valid."""
    session, _ = await chat_session(request)
    svc = services(request)
    await svc.chat.cancel(session.id)
    await svc.chat.reset(session)
    return web.Response(status=204)


@routes.get(BASE + "/transcript.json")
@documented("Download the conversation as JSON.", access=Access.ACCESS_KEY)
async def transcript(request: web.Request) -> web.Response:
    session, _ = await chat_session(request)
    messages = await services(request).store.messages.list(session.id)
    media = await services(request).answer_files.by_message(session.id)
    # The seed's shape, but `context` and `metadata` stay empty: they are what the tenant's backend told
    # botline about this person (extraContext, metadata), not the person's to download.
    body: dict[str, Any] = {
        "messages": [{"role": m.role.value, "content": m.content, **({"agent": m.agent} if m.agent else {}),
                      **({"media": media[m.id]} if m.id in media else {})}
                     for m in messages if is_visible(m)],
        "handoff": handoff_view(session.handoff, services(request).clock.now()),
        "context": None,
        "sessionId": session.id,
        "metadata": {},
    }
    return json_response(body, headers={
        "Content-Disposition": f'attachment; filename="transcript-{session.id}.json"'})
