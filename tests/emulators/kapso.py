"""A faithful fake of Kapso (kapso.ai), the WhatsApp Cloud API platform, for tests.

:class:`FakeKapso` is a real aiohttp server speaking Kapso's Meta-compatible
proxy, so the code under test only needs ``api_url`` pointed at
:attr:`FakeKapso.url`:

* ``POST /meta/whatsapp/{version}/{phoneNumberId}/messages`` (``v24.0``; the
  unversioned path of the quick-start works too) with ``X-API-Key`` (or
  ``Authorization: Bearer``) and a Meta Cloud API body: ``type: "text"``
  ``{text: {body, preview_url?}}``, ``type: "template"`` ``{template: {name,
  language: {code}, components}}``, media and the rest; answers Meta's
  ``{messaging_product, contacts: [{input, wa_id}], messages: [{id: "wamid..."}]}``.
  A body with ``status: "read"`` (mark read / typing indicator) answers ``{"success": true}``.
* ``POST /meta/whatsapp/{version}/{phoneNumberId}/media`` (Meta's media upload: multipart
  ``messaging_product=whatsapp``, ``type`` = MIME type, ``file``) -> ``{"id": "<media id>"}``; the bytes
  are kept in :attr:`FakeKapso.media`. A ``type: "audio"`` message names an uploaded ``id`` or a
  ``link``; ``voice: true`` needs OGG/Opus (``audio/ogg``), as Meta requires for voice notes.
* Meta's error envelope ``{"error": {message, type, code, error_data: {messaging_product,
  details}, fbtrace_id}}`` for invalid bodies and for the 24-hour rule: with
  ``window="reject"``, a non-template send to a number whose last inbound
  message is missing or older than 24 h (by :attr:`FakeKapso.now`) fails with
  code 131047 "Re-engagement message"; with ``window="webhook"`` it is accepted
  and reported by a ``whatsapp.message.failed`` webhook instead, as Meta does.

Webhooks follow Kapso's payload v2 (event name in ``X-Webhook-Event``, body
``{message, conversation, is_new_conversation, phone_number_id}``), signed with
``X-Webhook-Signature`` = hex HMAC-SHA256(secret, exact body bytes), plus
``X-Idempotency-Key``, ``X-Webhook-Payload-Version: v2`` and, for batches,
``X-Webhook-Batch`` / ``X-Batch-Size``. Builders make inbound messages
(which also open the 24-hour window), outbound echoes (``direction:
"outbound"``), status events and batches; :meth:`FakeKapso.push` POSTs one
to any URL (optionally with a bad or no signature), :meth:`FakeKapso.emit` to the
configured webhook with Kapso's retries (10 s, 40 s, 90 s, times ``retry_scale``).
An accepted send emits ``whatsapp.message.sent`` when the webhook subscribes to it.

Choices where the reference (provider-protocols.md section 4) is UNCONFIRMED or silent:

* Missing or wrong API key: HTTP 401 ``{"error": "Invalid API key"}`` (Kapso's
  error body shape is not documented; its SDK accepts ``{"error": "<string>"}``).
* Unknown phone number id and unknown paths: Graph API errors (code 100 subcode
  33, HTTP 400; code 2500, HTTP 400) as Meta would answer.
* The synchronous 131047 rejection uses HTTP 400 and Graph's envelope (the shape
  is Graph's, unconfirmed for Kapso); Meta itself usually reports it
  asynchronously, hence ``window="webhook"``.
* Injected 429 -> Meta code 130429 "Rate limit hit"; 500/502 -> code 1; 503 ->
  code 2; 409 -> ``{"error": "Another message in-flight for this conversation.
  Retry shortly."}``. ``Retry-After`` only when asked for.
* ``X-Idempotency-Key`` = hex SHA-256 of the body (the Meta-kind rule; Kapso-kind
  semantics are undocumented), so pushing the same payload twice repeats the key.
* Any 2xx counts as delivered (the docs ask for "200 OK").
* Inbound messages carry ``message.from`` (digits) and outbound ones
  ``message.to`` (community samples); group messages get Meta's ``group_id``
  on ``message`` (Kapso's v2 group shape is undocumented).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.emulators.webhook_pusher import (
    JSON,
    InjectedFailure,
    Instant,
    Payload,
    ProviderEmulator,
    RecordedSend,
    encode_payload,
    serve_forever,
)

__all__ = ["KAPSO_MESSAGE_EVENTS", "FakeKapso", "KapsoConversation", "kapso_signature"]

KAPSO_MESSAGE_EVENTS = (
    "whatsapp.message.received",
    "whatsapp.message.sent",
    "whatsapp.message.delivered",
    "whatsapp.message.read",
    "whatsapp.message.failed",
)
"""The message events a phone-number webhook can subscribe to."""

WINDOW_SECONDS = 24 * 60 * 60
_MAX_TEXT = 4096
_RETRY_DELAYS = (10.0, 40.0, 90.0)
_MEDIA_URL = "https://api.kapso.ai/media/"
_MAX_AUDIO_BYTES = 16 * 1024 * 1024
_AUDIO_TYPES = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
_DOCUMENT_TYPES = frozenset({
    "text/plain", "application/pdf", "application/msword", "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})
"""Meta's supported document types (anything else is refused at upload)."""
_DEFAULT_GROUP_ID = "Y2FwaV9ncm91cDoxNTU1MDc4Mzg4MToxMjAzNjMwMjU="  # Meta groups API ids are opaque
_SEND_TYPES = {
    "text",
    "template",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "interactive",
    "reaction",
    "location",
    "contacts",
}
_REENGAGEMENT = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "More than 24 hours have passed since the recipient last replied",
    "details": "Message failed to send because more than 24 hours have passed since the customer last "
    "replied to this number.",
}


def kapso_signature(secret: str, body: bytes) -> str:
    """``X-Webhook-Signature``: hex HMAC-SHA256 of the exact body bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_wamid() -> str:
    """A WhatsApp message id in Meta's format."""
    return "wamid.HBgM" + base64.b64encode(secrets.token_bytes(27)).decode().rstrip("=")


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def _fbtrace() -> str:
    return base64.b64encode(secrets.token_bytes(9)).decode().replace("+", "A").replace("/", "B")


@dataclass
class KapsoConversation:
    """Kapso's view of the conversation with one contact."""

    id: str
    phone: str
    """Digits only."""
    contact_name: str
    created_at: float
    messages_count: int = 0
    last_message_id: str | None = None
    last_message_type: str | None = None
    last_message_text: str | None = None
    last_message_at: float | None = None
    last_inbound_at: float | None = None
    """When the contact last wrote (this is what opens the 24-hour window)."""
    last_outbound_at: float | None = None


class FakeKapso(ProviderEmulator):
    """A fake Kapso project with one WhatsApp number; use ``async with FakeKapso() as kapso:``."""

    def __init__(
        self,
        *,
        api_key: str = "kapso-api-key",
        phone_number_id: str = "123456789012345",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        events: Iterable[str] = KAPSO_MESSAGE_EVENTS,
        window: Literal["off", "reject", "webhook"] = "off",
        host: str = "127.0.0.1",
        port: int = 0,
        now: Callable[[], float] = time.time,
        retry_scale: float = 1.0,
        webhook_timeout: float = 10.0,
    ) -> None:
        """Configure the project; nothing listens until :meth:`start`.

        ``webhook_url``, ``webhook_secret`` and ``events`` are the phone-number
        webhook (used by :meth:`emit` and the automatic events). ``window``
        enforces the 24-hour customer-service window (see the module docstring).
        ``now`` is the clock (epoch seconds) the window is judged by.
        """
        super().__init__(host=host, port=port, now=now, retry_scale=retry_scale, webhook_timeout=webhook_timeout)
        self.api_key = api_key
        self.phone_number_id = phone_number_id
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.events = set(events)
        self.window = window
        self.conversations: dict[str, KapsoConversation] = {}
        """Conversations by contact phone (digits)."""
        self.media: dict[str, tuple[str, bytes]] = {}
        """Uploaded media by id: (MIME type, bytes)."""
        self.read_receipts: list[RecordedSend] = []
        """Accepted mark-as-read / typing-indicator requests."""

    def messages_url(self, version: str = "v24.0") -> str:
        """The send URL for this number."""
        return f"{self.url}/meta/whatsapp/{version}/{self.phone_number_id}/messages"

    # -- the 24-hour window ------------------------------------------------------------------

    def note_inbound(self, phone: str, at: float | None = None) -> None:
        """Record that ``phone`` wrote at ``at`` (default now), opening the 24-hour window."""
        conversation = self._conversation(phone)[0]
        conversation.last_inbound_at = self.now() if at is None else at

    def window_open(self, phone: str) -> bool:
        """Whether free-form messages to ``phone`` are allowed now."""
        conversation = self.conversations.get(_digits(phone))
        last = conversation.last_inbound_at if conversation else None
        return last is not None and self.now() - last < WINDOW_SECONDS

    def _conversation(self, phone: str, name: str = "John Doe") -> tuple[KapsoConversation, bool]:
        key = _digits(phone)
        existing = self.conversations.get(key)
        if existing is not None:
            return existing, False
        created = KapsoConversation(id=str(uuid.uuid4()), phone=key, contact_name=name, created_at=self.now())
        self.conversations[key] = created
        return created, True

    # -- server ------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post(r"/meta/whatsapp/{version:v\d+\.\d+}/{phone_number_id}/messages", self._messages)
        app.router.add_post("/meta/whatsapp/{phone_number_id}/messages", self._messages)
        app.router.add_post(r"/meta/whatsapp/{version:v\d+\.\d+}/{phone_number_id}/media", self._upload_media)
        app.router.add_route("*", "/{tail:.*}", self._unknown_path)

    @staticmethod
    def graph_error(
        message: str,
        code: int,
        *,
        type_: str = "OAuthException",
        details: str | None = None,
        subcode: int | None = None,
    ) -> dict[str, Any]:
        """Meta's Graph API error envelope."""
        error: dict[str, Any] = {"message": message, "type": type_, "code": code}
        if details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        if subcode is not None:
            error["error_subcode"] = subcode
        error["fbtrace_id"] = _fbtrace()
        return {"error": error}

    async def _unknown_path(self, request: web.Request) -> web.Response:
        return self._json(400, self.graph_error(f"Unknown path components: {request.path}", 2500))

    def _authorized(self, request: web.Request) -> bool:
        key = request.headers.get("X-API-Key")
        if key is None:
            authorization = request.headers.get("Authorization", "")
            key = authorization[7:] if authorization.startswith("Bearer ") else None
        return key is not None and hmac.compare_digest(key, self.api_key)

    async def _messages(self, request: web.Request) -> web.Response:
        raw, body, _ = await self._read(request)
        record = RecordedSend("messages", request.path, request.headers, body, raw)
        status, answer, failure = self._messages_answer(request, body)
        record.status, record.response = status, answer
        is_read = body.get("status") == "read"
        self._record(record, message=not is_read)
        if failure is not None:
            return failure
        if 200 <= status < 300:
            if is_read:
                self.read_receipts.append(record)
            else:
                self._after_send(body, answer)
        return self._json(status, answer)

    def _messages_answer(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any, web.Response | None]:
        if not self._authorized(request):
            return 401, {"error": "Invalid API key"}, None
        number_id = request.match_info["phone_number_id"]
        if number_id != self.phone_number_id:
            message = (
                f"Unsupported post request. Object with ID '{number_id}' does not exist, cannot be loaded due "
                "to missing permissions, or does not support this operation. Please read the Graph API "
                "documentation at https://developers.facebook.com/docs/graph-api"
            )
            return 400, self.graph_error(message, 100, type_="GraphMethodException", subcode=33), None
        if (failure := self._take_failure()) is not None:
            return failure.status, None, failure
        if body.get("messaging_product") != "whatsapp":
            return 400, self._param_error("The parameter messaging_product is required."), None
        if body.get("status") == "read":
            if not isinstance(body.get("message_id"), str):
                return 400, self._param_error("The parameter message_id is required."), None
            return 200, {"success": True}, None
        if (problem := self._body_problem(body)) is not None:
            return 400, problem, None
        to = str(body["to"])
        if body.get("type", "text") != "template" and self.window == "reject" and not self.window_open(to):
            error = self.graph_error(
                f"(#{_REENGAGEMENT['code']}) {_REENGAGEMENT['title']}", 131047, details=str(_REENGAGEMENT["details"])
            )
            return 400, error, None
        sent: dict[str, Any] = {"id": new_wamid()}
        if body.get("type") == "template":
            sent["message_status"] = "accepted"
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": _digits(to)}],
            "messages": [sent],
        }
        return 200, answer, None

    async def _upload_media(self, request: web.Request) -> web.Response:
        """Meta's media upload: 16 MB for audio; audio/ogg only with the Opus codec (checked by magic)."""
        if not self._authorized(request):
            return self._json(401, {"error": "Invalid API key"})
        if request.match_info["phone_number_id"] != self.phone_number_id:
            return self._json(400, self.graph_error("Unsupported post request.", 100, type_="GraphMethodException"))
        if request.content_type != "multipart/form-data":
            return self._json(400, self._param_error("The parameter file is required."))
        form = await request.post()
        upload, mime = form.get("file"), form.get("type")
        if form.get("messaging_product") != "whatsapp":
            return self._json(400, self._param_error("The parameter messaging_product is required."))
        if not isinstance(upload, web.FileField):
            return self._json(400, self._param_error("The parameter file is required."))
        if not isinstance(mime, str) or mime not in _AUDIO_TYPES | _IMAGE_TYPES | _DOCUMENT_TYPES:
            return self._json(400, self._param_error("Param type is not a supported MIME type", str(mime)))
        data = upload.file.read()
        if len(data) > _MAX_AUDIO_BYTES or (mime == "audio/ogg" and not data.startswith(b"OggS")):
            return self._json(400, self._param_error("Invalid parameter", "The media file is invalid."))
        media_id = str(secrets.randbelow(10**15) + 10**15)
        self.media[media_id] = (mime, data)
        self._changes.notify()
        return self._json(200, {"id": media_id})

    def _param_error(self, message: str, details: str | None = None) -> dict[str, Any]:
        return self.graph_error(f"(#100) {message}", 100, details=details)

    def _body_problem(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Meta's answer to an invalid message body, or None."""
        if not isinstance(body.get("to"), str) or not body["to"]:
            return self._param_error("The parameter to is required.")
        type_ = body.get("type", "text")
        if type_ not in _SEND_TYPES:
            return self._param_error("Invalid parameter", f"Param type must be one of {sorted(_SEND_TYPES)}")
        if type_ == "text":
            text = body.get("text")
            text_body = text.get("body") if isinstance(text, dict) else None
            if not isinstance(text_body, str) or not text_body:
                return self._param_error("The parameter text['body'] is required.")
            if len(text_body) > _MAX_TEXT:
                return self._param_error(
                    "Invalid parameter", f"Param text['body'] must be at most {_MAX_TEXT} characters long."
                )
        elif type_ == "template":
            template = body.get("template")
            if not isinstance(template, dict) or not isinstance(template.get("name"), str):
                return self._param_error("The parameter template['name'] is required.")
            language = template.get("language")
            if not isinstance(language, dict) or not isinstance(language.get("code"), str):
                return self._param_error("The parameter template['language'] is required.")
        elif not isinstance(body.get(type_), dict):
            return self._param_error(f"The parameter {type_} is required.")
        elif type_ == "audio":
            audio = body["audio"]
            if "id" not in audio and "link" not in audio:
                return self._param_error("The parameter audio['id'] or audio['link'] is required.")
            if "id" in audio and str(audio["id"]) not in self.media:
                return self._param_error("Invalid parameter", "The media id does not exist.")
            if audio.get("voice") and "id" in audio and self.media[str(audio["id"])][0] != "audio/ogg":
                return self._param_error("Invalid parameter", "Voice messages must be audio/ogg with the Opus codec.")
        elif type_ in ("image", "document"):
            media = body[type_]
            if "id" not in media and "link" not in media:
                return self._param_error(f"The parameter {type_}['id'] or {type_}['link'] is required.")
            if "id" in media and str(media["id"]) not in self.media:
                return self._param_error("Invalid parameter", "The media id does not exist.")
            if type_ == "image" and "id" in media and self.media[str(media["id"])][0] not in _IMAGE_TYPES:
                return self._param_error("Invalid parameter", "Images must be image/jpeg or image/png.")
        return None

    def _after_send(self, body: dict[str, Any], answer: dict[str, Any]) -> None:
        """Track the conversation and fire ``whatsapp.message.sent`` (or ``failed``, outside the window)."""
        to = str(body["to"])
        type_ = str(body.get("type", "text"))
        text = _text_of(body)
        wamid = answer["messages"][0]["id"]
        blocked = type_ != "template" and self.window == "webhook" and not self.window_open(to)
        payload = self.outbound_message(
            to,
            text,
            message_id=wamid,
            type_=type_,
            status="failed" if blocked else "sent",
            errors=[_reengagement_error()] if blocked else None,
            content=None if type_ == "text" else body.get(type_),  # text events carry {"body"} only
        )
        if self.webhook_url is not None:
            self.pusher.spawn(self.emit(payload))

    def _failure_response(self, failure: InjectedFailure) -> web.Response:
        if failure.body is not None:
            return self._json(failure.status, failure.body)
        if failure.status == 409:
            return self._json(409, {"error": "Another message in-flight for this conversation. Retry shortly."})
        if failure.status == 429:
            body = self.graph_error(
                "(#130429) Rate limit hit", 130429, details="Cloud API message throughput has been reached."
            )
        elif failure.status == 503:
            body = self.graph_error("(#2) Service temporarily unavailable", 2)
        else:
            body = self.graph_error("An unknown error occurred", 1)
        return self._json(failure.status, body)

    # -- webhook payloads --------------------------------------------------------------------

    def _conversation_payload(self, conversation: KapsoConversation, *, summary: bool = True) -> dict[str, Any]:
        def iso(seconds: float | None) -> str | None:
            return None if seconds is None else Instant(seconds).iso

        active = conversation.last_message_at or conversation.created_at
        payload: dict[str, Any] = {
            "id": conversation.id,
            "phone_number": "+" + conversation.phone,
            "status": "active",
            "last_active_at": iso(active),
            "created_at": iso(conversation.created_at),
            "updated_at": iso(active),
            "metadata": {},
            "phone_number_id": self.phone_number_id,
        }
        if summary:
            payload["kapso"] = {
                "contact_name": conversation.contact_name,
                "messages_count": conversation.messages_count,
                "last_message_id": conversation.last_message_id,
                "last_message_type": conversation.last_message_type,
                "last_message_timestamp": iso(conversation.last_message_at),
                "last_message_text": conversation.last_message_text,
                "last_inbound_at": iso(conversation.last_inbound_at),
                "last_outbound_at": iso(conversation.last_outbound_at),
            }
        return payload

    def _inbound(
        self,
        phone: str,
        type_: str,
        content: dict[str, Any],
        kapso_extra: dict[str, Any],
        *,
        text: str,
        message_id: str | None,
        name: str,
        timestamp: int | None,
        group_id: str | None,
        context_id: str | None,
    ) -> dict[str, Any]:
        conversation, is_new = self._conversation(phone, name)
        at = float(timestamp) if timestamp is not None else self.now()
        wamid = message_id or new_wamid()
        conversation.contact_name = name
        conversation.messages_count += 1
        conversation.last_message_id, conversation.last_message_type = wamid, type_
        conversation.last_message_text, conversation.last_message_at = text, at
        conversation.last_inbound_at = at
        message: dict[str, Any] = {"id": wamid, "from": conversation.phone, "timestamp": str(int(at)), "type": type_}
        if group_id is not None:
            message["group_id"] = group_id
        if context_id is not None:
            message["context"] = {"from": conversation.phone, "id": context_id}
        message[type_] = content
        message["kapso"] = {
            "direction": "inbound",
            "status": "received",
            "processing_status": "pending",
            "origin": "cloud_api",
            "has_media": type_ in ("image", "video", "audio", "document", "sticker"),
            "content": text,
            **kapso_extra,
        }
        return {
            "message": message,
            "conversation": self._conversation_payload(conversation),
            "is_new_conversation": is_new,
            "phone_number_id": self.phone_number_id,
        }

    def text_message(
        self,
        phone: str,
        text: str,
        *,
        message_id: str | None = None,
        name: str = "John Doe",
        timestamp: int | None = None,
        group_id: str | None = None,
        context_id: str | None = None,
        from_me: bool = False,
        group: bool | str = False,
    ) -> dict[str, Any]:
        """A ``whatsapp.message.received`` payload: ``phone`` wrote ``text``.

        Building it is the contact writing: the conversation summary is updated
        and the 24-hour window opens at ``timestamp`` (epoch seconds, default now).
        ``group_id`` (or ``group``: True or an id) marks a group message;
        ``context_id`` a reply to that wamid. ``from_me`` returns the own-message
        echo instead (:meth:`echo_message`, ``whatsapp.message.sent``, outbound).
        """
        if from_me:
            return self.echo_message(phone, text, message_id=message_id, timestamp=timestamp)
        if group and group_id is None:
            group_id = group if isinstance(group, str) else _DEFAULT_GROUP_ID
        return self._inbound(
            phone,
            "text",
            {"body": text},
            {},
            text=text,
            message_id=message_id,
            name=name,
            timestamp=timestamp,
            group_id=group_id,
            context_id=context_id,
        )

    def image_message(
        self,
        phone: str,
        *,
        caption: str = "",
        filename: str = "photo.jpg",
        content_type: str = "image/jpeg",
        byte_size: int = 204800,
        message_id: str | None = None,
        name: str = "John Doe",
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A received image with Kapso's media helpers (``media_url``, ``media_data``)."""
        url = _MEDIA_URL + filename
        size = f"[Size: {byte_size // 1024} KB | Type: {content_type}]"
        content = f"{caption} Image attached ({filename}) {size} URL: {url}"
        extra = {
            "media_url": url,
            "media_data": {"url": url, "filename": filename, "content_type": content_type, "byte_size": byte_size},
            "message_type_data": {"caption": caption},
        }
        return self._inbound(
            phone,
            "image",
            {"caption": caption, "id": "media_" + secrets.token_hex(6)},
            extra,
            text=content.strip(),
            message_id=message_id,
            name=name,
            timestamp=timestamp,
            group_id=None,
            context_id=None,
        )

    def audio_message(
        self,
        phone: str,
        *,
        transcript: str | None = None,
        filename: str = "voice.ogg",
        byte_size: int = 51200,
        message_id: str | None = None,
        name: str = "John Doe",
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A received voice note; ``transcript`` adds ``kapso.transcript.text``."""
        url = _MEDIA_URL + filename
        content = f"[Audio attached] ({filename}) [Size: {byte_size // 1024} KB | Type: audio/ogg] URL: {url}"
        extra: dict[str, Any] = {
            "media_url": url,
            "media_data": {"url": url, "filename": filename, "content_type": "audio/ogg", "byte_size": byte_size},
        }
        if transcript is not None:
            content += f"\nTranscript: {transcript}"
            extra["transcript"] = {"text": transcript}
        return self._inbound(
            phone,
            "audio",
            {"id": "media_" + secrets.token_hex(6)},
            extra,
            text=content,
            message_id=message_id,
            name=name,
            timestamp=timestamp,
            group_id=None,
            context_id=None,
        )

    def outbound_message(
        self,
        phone: str,
        text: str,
        *,
        message_id: str | None = None,
        status: str = "sent",
        origin: str = "cloud_api",
        type_: str = "text",
        timestamp: int | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        content: Any = None,
    ) -> dict[str, Any]:
        """An outbound message event (``direction: "outbound"``): the payload of
        ``whatsapp.message.sent|delivered|read|failed`` (by ``status``).

        ``origin="business_app"`` is an echo of a message typed in the WhatsApp
        Business app. ``kapso.statuses`` holds the status history up to ``status``.
        """
        conversation, is_new = self._conversation(phone)
        at = float(timestamp) if timestamp is not None else self.now()
        wamid = message_id or new_wamid()
        if conversation.last_message_id != wamid:
            conversation.messages_count += 1
        conversation.last_message_id, conversation.last_message_type = wamid, type_
        conversation.last_message_text, conversation.last_message_at = text, at
        conversation.last_outbound_at = at
        order = ["sent", "delivered", "read"]
        history = order[: order.index(status) + 1] if status in order else ["sent", status]
        statuses: list[dict[str, Any]] = []
        for step in history:
            entry: dict[str, Any] = {
                "id": wamid,
                "status": step,
                "timestamp": str(int(at)),
                "recipient_id": conversation.phone,
            }
            if step in ("sent", "delivered", "read"):
                entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
            if step == "failed":
                entry["errors"] = [dict(error) for error in (errors or [_reengagement_error()])]
            statuses.append(entry)
        message: dict[str, Any] = {"id": wamid, "to": conversation.phone, "timestamp": str(int(at)), "type": type_}
        message[type_] = content if content is not None else ({"body": text} if type_ == "text" else {})
        message["kapso"] = {
            "direction": "outbound",
            "status": status,
            "processing_status": "completed",
            "origin": origin,
            "has_media": type_ in ("image", "video", "audio", "document", "sticker"),
            "content": text,
            "statuses": statuses,
        }
        return {
            "message": message,
            "conversation": self._conversation_payload(conversation, summary=status == "sent"),
            "is_new_conversation": is_new,
            "phone_number_id": self.phone_number_id,
        }

    def echo_message(self, phone: str, text: str, **options: Any) -> dict[str, Any]:
        """An own-message echo: a message typed in the WhatsApp Business app (``whatsapp.message.sent``)."""
        return self.outbound_message(phone, text, origin="business_app", **options)

    def status_event(
        self, message_id: str, phone: str, status: str = "delivered", *, text: str = "", **options: Any
    ) -> dict[str, Any]:
        """``whatsapp.message.delivered|read|failed`` for a message we sent."""
        return self.outbound_message(phone, text, message_id=message_id, status=status, **options)

    @staticmethod
    def batch(payloads: Sequence[Mapping[str, Any]], *, event: str = "whatsapp.message.received") -> dict[str, Any]:
        """A buffered delivery: ``{"type": event, "batch": true, "data": [...]}``."""
        return {"type": event, "batch": True, "data": [dict(payload) for payload in payloads]}

    # -- delivery ----------------------------------------------------------------------------

    @staticmethod
    def event_of(payload: Mapping[str, Any]) -> str:
        """The ``X-Webhook-Event`` a payload travels with, read off its content."""
        if payload.get("batch") is True:
            return str(payload.get("type", "whatsapp.message.received"))
        if isinstance(payload.get("event"), str):
            return str(payload["event"])
        message = payload.get("message")
        if isinstance(message, dict):
            kapso = message.get("kapso") or {}
            if kapso.get("direction") == "inbound":
                return "whatsapp.message.received"
            return f"whatsapp.message.{kapso.get('status', 'sent')}"
        if "since_message" in payload:
            return "whatsapp.conversation.inactive"
        conversation = payload.get("conversation")
        if not isinstance(conversation, dict):
            return "whatsapp.message.received"
        if conversation.get("status") == "ended":
            return "whatsapp.conversation.ended"
        return "whatsapp.conversation.created"

    def webhook_headers(
        self,
        body: bytes,
        event: str,
        *,
        secret: str | None = None,
        sign: bool = True,
        bad_signature: bool = False,
        idempotency_key: str | None = None,
        batch_size: int | None = None,
    ) -> dict[str, str]:
        """The headers Kapso sends with ``body`` (signature over exactly these bytes)."""
        headers = {
            "Content-Type": JSON,
            "X-Webhook-Event": event,
            "X-Webhook-Payload-Version": "v2",
            "X-Idempotency-Key": idempotency_key or hashlib.sha256(body).hexdigest(),
        }
        key = secret if secret is not None else self.webhook_secret
        if sign and key is not None:
            headers["X-Webhook-Signature"] = kapso_signature(key + "-wrong" if bad_signature else key, body)
        if batch_size is not None:
            headers["X-Webhook-Batch"] = "true"
            headers["X-Batch-Size"] = str(batch_size)
        return headers

    async def push(
        self,
        url: str,
        payload: Payload,
        *,
        headers: Mapping[str, str] | None = None,
        event: str | None = None,
        secret: str | None = None,
        sign: bool = True,
        bad_signature: bool = False,
        idempotency_key: str | None = None,
    ) -> int:
        """POST one webhook to ``url`` as Kapso does; the receiver's status.

        ``event`` defaults to :meth:`event_of` the payload. The signature uses
        ``secret`` (default :attr:`webhook_secret`; none -> no signature header);
        ``sign=False`` omits it, ``bad_signature=True`` sends a wrong one.
        ``headers`` are added last (they may override any of Kapso's).
        """
        body = encode_payload(payload)
        if isinstance(payload, Mapping):
            parsed: Mapping[str, Any] = payload
        else:
            try:
                loaded = orjson.loads(body)
            except orjson.JSONDecodeError:
                loaded = None
            parsed = loaded if isinstance(loaded, dict) else {}
        sent = self.webhook_headers(
            body,
            event or self.event_of(parsed),
            secret=secret,
            sign=sign,
            bad_signature=bad_signature,
            idempotency_key=idempotency_key,
            batch_size=len(parsed["data"]) if parsed.get("batch") is True else None,
        )
        sent.update(headers or {})
        return await self.pusher.post(url, body, sent)

    async def emit(self, payload: Mapping[str, Any], *, event: str | None = None) -> int | None:
        """Deliver ``payload`` to :attr:`webhook_url` if it subscribes to the event, retrying after
        10 s, 40 s and 90 s (times ``retry_scale``) until a 2xx; the last status (None if none)."""
        name = event or self.event_of(payload)
        if self.webhook_url is None or name not in self.events:
            return None
        body = encode_payload(payload)
        headers = self.webhook_headers(
            body, name, batch_size=len(payload["data"]) if payload.get("batch") is True else None
        )
        delays = [delay * self.retry_scale for delay in _RETRY_DELAYS]
        return await self.pusher.deliver(self.webhook_url, body, headers, delays=delays)


def _reengagement_error() -> dict[str, Any]:
    return {
        "code": _REENGAGEMENT["code"],
        "title": _REENGAGEMENT["title"],
        "message": _REENGAGEMENT["message"],
        "error_data": {"details": _REENGAGEMENT["details"]},
    }


def _text_of(body: Mapping[str, Any]) -> str:
    """A text rendering of a send body (Kapso's ``content``)."""
    type_ = body.get("type", "text")
    if type_ == "text" and isinstance(body.get("text"), dict):
        return str(body["text"].get("body", ""))
    if type_ == "template" and isinstance(body.get("template"), dict):
        template = body["template"]
        parameters = [
            str(parameter.get("text", ""))
            for component in template.get("components") or []
            if isinstance(component, dict)
            for parameter in component.get("parameters") or []
            if isinstance(parameter, dict) and parameter.get("type") == "text"
        ]
        return f"[Template: {template.get('name')}] " + " ".join(parameters)
    content = body.get(type_)
    if isinstance(content, dict) and isinstance(content.get("caption"), str):
        return str(content["caption"])
    return f"[{type_}]"


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: serve a fake Kapso project until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.kapso", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9103)
    parser.add_argument("--api-key", default="kapso-api-key")
    parser.add_argument("--phone-number-id", default="123456789012345")
    args = parser.parse_args(argv)
    fake = FakeKapso(api_key=args.api_key, phone_number_id=args.phone_number_id, host=args.host, port=args.port)
    serve_forever(fake, lambda _: f"fake Kapso listening on {fake.messages_url()}")


if __name__ == "__main__":
    main()
