"""The web chat's answer files: kept images and documents, and the spoken audio, streamed as it is made.

Both sit under the chat's public API, behind the session's access key: a file id is looked up in that
session only, so another session's key (another tenant's, or another visitor's) finds nothing. What is
served says what it is and no more: images and audio with their own (checked) type, anything else as
an `application/octet-stream` attachment, all with `nosniff` and a sandboxing CSP.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from botline.api.http import ApiError
from botline.api.openapi import Access, documented
from botline.api.public_chat import BASE, chat_session, spoken
from botline.api.state import Services, services
from botline.domain.answer_media import AnswerMedia, AnswerMediaKind
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Message, Session
from botline.media.outbound import INLINE_IMAGE_TYPES
from botline.metrics import SpeechOutcome
from botline.speech import AudioFormat, SpeechError

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

CACHE_SECONDS = 3600
PLAYABLE_TYPES = frozenset({"audio/mpeg", "audio/ogg", "audio/wav"})
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": f"private, max-age={CACHE_SECONDS}"}
MEDIA_ID_MAX = 64
SHOWN_TYPES = {AnswerMediaKind.IMAGE: INLINE_IMAGE_TYPES, AnswerMediaKind.AUDIO: PLAYABLE_TYPES}
"""Served as themselves (drawn, played); every other file is an attachment of no particular type."""


def file_headers(media: AnswerMedia) -> tuple[str, dict[str, str]]:
    """The Content-Type and headers a kept file is served with."""
    shown = media.content_type in SHOWN_TYPES.get(media.kind, frozenset())
    disposition = "inline" if shown else "attachment"
    headers = {**SAFE_HEADERS, "Content-Disposition": f'{disposition}; filename="{media.file_name}"'}
    return (media.content_type if shown else "application/octet-stream"), headers


@routes.get(BASE + "/media/{media_id}")
@documented("An image, file or spoken audio of an answer, kept with the conversation (ids come with the "
            "session's messages).", access=Access.ACCESS_KEY, media_type="application/octet-stream")
async def answer_file(request: web.Request) -> web.Response:
    session, _ = await chat_session(request)
    found = await services(request).store.media.get(session.id, request.match_info["media_id"][:MEDIA_ID_MAX])
    if found is None:
        raise ApiError(404, "There is no file with this id in this chat.")
    media, data = found
    content_type, headers = file_headers(media)
    return web.Response(body=data, content_type=content_type, headers=headers)


async def _answer(svc: Services, session: Session, client: ChatClient, message_id: str) -> Message:
    message = next((m for m in await svc.store.messages.list(session.id) if m.id == message_id), None)
    if message is None or not spoken(client, message, user_spoke=True):
        raise ApiError(404, "There is no spoken answer with this id.")
    return message


@routes.get(BASE + "/messages/{message_id}/audio")
@documented("The spoken version of an answer (MP3), streamed as the speech endpoint sends it, when the chat "
            "client speaks.", access=Access.ACCESS_KEY, upstream=True, media_type="audio/mpeg")
async def answer_audio(request: web.Request) -> web.StreamResponse:
    """The answer's kept audio when a player fetched it whole before (any replica); else the synthesis,
    shared with any other player of the same audio, passed on chunk by chunk, and kept once it is whole."""
    session, client = await chat_session(request)
    if not client.client_parameters.speaks:
        raise ApiError(404, "Spoken answers are off for this chat.")
    svc = services(request)
    message = await _answer(svc, session, client, request.match_info["message_id"])
    if (kept := await svc.answer_files.audio(session.id, message.id)) is not None:
        svc.metrics.speech(client.client_parameters.audio_synthesis_source, SpeechOutcome.CACHED)
        media, data = kept
        return web.Response(body=data, content_type=media.content_type, headers=SAFE_HEADERS)
    if request.method == "HEAD":  # a link checker or a prefetch: no synthesis is paid for what no one plays
        return web.Response(content_type="audio/mpeg", headers=SAFE_HEADERS)
    try:
        flight = await svc.speech.stream(client, str(message.content), AudioFormat.MP3)
        chunks = flight.chunks()
        first = await anext(chunks)
    except SpeechError as exc:
        raise ApiError(502, f"The answer could not be spoken: {exc.message}.") from None
    if flight.finished:  # from the Store: whole, with its length (the player can seek at once)
        response: web.StreamResponse = web.Response(body=await flight.read(), content_type=flight.content_type,
                                                    headers=SAFE_HEADERS)
    else:
        response, whole = await _relay(request, flight.content_type, first, chunks)
        if not whole:  # cut short (too long, the endpoint failed): the player shows an error
            return response
    await svc.answer_files.keep_audio(session.id, message.id, await flight.read(), flight.content_type)
    return response


async def _relay(request: web.Request, content_type: str, first: bytes, rest: AsyncIterator[bytes]
                 ) -> tuple[web.StreamResponse, bool]:
    """Sends the audio as it arrives (chunked), and whether all of it went; a failure after the first byte
    closes the connection, so the player never takes a truncated file for a whole one."""
    response = web.StreamResponse(headers={**SAFE_HEADERS, "Content-Type": content_type})
    await response.prepare(request)
    await response.write(first)
    try:
        async for chunk in rest:
            await response.write(chunk)
    except SpeechError as exc:
        log.warning("spoken answer cut short: %s", exc.message)
        if request.transport is not None:
            request.transport.abort()
        return response, False
    await response.write_eof()
    return response, True
