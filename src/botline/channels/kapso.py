"""Kapso (kapso.ai), WhatsApp through Meta's Cloud API.

Outbound: `POST {api_url}/meta/whatsapp/v24.0/{phoneNumberId}/messages` with `X-API-Key` and Meta's
body; `send_template` for messages outside WhatsApp's 24-hour customer-service window, where free text
fails with error 131047 (raised as `OutsideWindow`, never retried). Meta's typing indicator needs the
id of the message being answered, which `typing()` is not given, so Kapso shows none.

Inbound: Kapso's payload v2 `whatsapp.message.received` (single or batched), or a raw Meta forward.
Only messages with `kapso.direction == "inbound"` are answered: sent/delivered/read/failed events and
WhatsApp Business app echoes are outbound, so a bot never answers itself. Authenticity: when a
webhook secret is configured, `X-Webhook-Signature` must be the hex HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

from botline.channels.base import (
    ChannelAdapter,
    DeliveryError,
    InboundMessage,
    ParsedWebhook,
    VoiceNote,
    WebhookRejected,
    epoch_seconds,
)
from botline.channels.provider_http import ProviderHttp, ProviderReply, multipart, retry_after, status_error
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import GroupPolicy, IntegrationType, KapsoIntegration
from botline.egress import Trust
from botline.media import WHATSAPP_DOCUMENT_BYTES, WHATSAPP_IMAGE_BYTES, OutboundMedia
from botline.media.outbound import WHATSAPP_IMAGE_TYPES

PROVIDER = "Kapso"
GRAPH_VERSION = "v24.0"
SIGNATURE_HEADER = "X-Webhook-Signature"
INBOUND = "inbound"
OUTBOUND = "outbound"
BUSINESS_APP = "business_app"
"""`kapso.origin` of a message typed in the WhatsApp Business app (coexistence), not sent through the API."""
META_OBJECT = "whatsapp_business_account"
GROUP_PREFIX = "group:"
"""Chat ids of WhatsApp groups (only with groupPolicy All): sent with recipient_type "group"."""
KAPSO_TEXT_LIMIT = 4096
"""Meta's limit for a text body."""
DEFAULT_TEMPLATE_LANGUAGE = "en"
TEMPLATE_TEXT_PARAMETER = "text"
"""The named body parameter ({{text}}) a continuation template carries the message in."""
WINDOW_CLOSED_CODE = 131047
THROTTLED_CODES = frozenset({130429, 131048, 131056, 80007})
"""Throughput, spam-rate, pair-rate and account rate limits: retry later."""
_MEDIA_TYPES = {"image": MediaKind.IMAGE, "audio": MediaKind.AUDIO, "document": MediaKind.DOCUMENT}


class OutsideWindow(DeliveryError):
    """Free-form text refused: the contact last wrote more than 24 hours ago; only a template can go."""

    def __init__(self) -> None:
        super().__init__(
            "Kapso refused the message: WhatsApp's 24-hour window is closed (the contact last wrote more than "
            "24 hours ago), so only an approved template can be sent (error 131047).", retryable=False,
        )


class KapsoAdapter(ChannelAdapter[KapsoIntegration]):
    kind = IntegrationType.KAPSO
    max_text_length = KAPSO_TEXT_LIMIT
    max_image_bytes = WHATSAPP_IMAGE_BYTES
    max_document_bytes = WHATSAPP_DOCUMENT_BYTES

    def __init__(self, http: ProviderHttp, api_url: str) -> None:
        self._http = http
        self._api_url = api_url.rstrip("/")

    def verify(self, integration: KapsoIntegration, headers: Mapping[str, str], body: bytes) -> None:
        secret = integration.webhook_secret_key
        if not secret:
            return  # only the URL token: documented as weaker
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), headers.get(SIGNATURE_HEADER, "").strip().encode()):
            raise WebhookRejected(401, "The Kapso webhook signature (X-Webhook-Signature) is missing or wrong.")

    def parse(self, integration: KapsoIntegration, payload: Any) -> ParsedWebhook:
        events = list(_events(payload))
        messages = [m for m in (self._message(integration, event) for event in events) if m is not None]
        return ParsedWebhook(messages=messages, ignored=max(len(events), 1) - len(messages))

    def _message(self, integration: KapsoIntegration, event: dict[str, Any]) -> InboundMessage | None:
        message = event.get("message")
        if not isinstance(message, dict):
            return None  # conversation events
        kapso = _kapso(message)
        # Outbound: botline's own sends (origin cloud_api) and their statuses are never answered; a message
        # typed in the WhatsApp Business app (origin business_app; its sent/delivered/read events share its
        # id, so it is recorded once) is a person taking over (docs/handoff.md).
        operator = kapso.get("direction") == OUTBOUND and kapso.get("origin") == BUSINESS_APP
        if kapso.get("direction") != INBOUND and not operator:
            return None
        number_id = event.get("phone_number_id")
        if number_id is not None and str(number_id) != integration.phone_number_id:
            return None  # another number's traffic: its replies would go out from ours
        message_id = message.get("id")
        if not isinstance(message_id, str) or not message_id:
            return None
        group = message.get("group_id")
        if group and (operator or integration.group_policy is not GroupPolicy.ALL):
            return None
        chat_id = _recipient(message, event.get("conversation")) if operator else \
            f"{GROUP_PREFIX}{group}" if group else _sender(message, event.get("conversation"))
        text, media = _content(message)
        if not chat_id or (not text and not media):
            return None
        return InboundMessage(
            provider_message_id=message_id, chat_id=chat_id, text=text,
            sender_name=None if operator else _name(event), media=media,
            timestamp=epoch_seconds(message.get("timestamp")), voice=message.get("type") == "audio",
            operator=operator,
        )

    def _messages_url(self, integration: KapsoIntegration) -> str:
        return f"{self._api_url}/meta/whatsapp/{GRAPH_VERSION}/{integration.phone_number_id}/messages"

    async def _send(self, integration: KapsoIntegration, chat_id: str, body: dict[str, Any]) -> None:
        recipient = {"recipient_type": "group", "to": chat_id.removeprefix(GROUP_PREFIX)} \
            if chat_id.startswith(GROUP_PREFIX) else {"recipient_type": "individual", "to": chat_id}
        reply = await self._http.request_json(  # the API base is the operator's (providers.kapso.api_url)
            "POST", self._messages_url(integration), provider=PROVIDER, trust=Trust.OPERATOR,
            json={"messaging_product": "whatsapp", **recipient, **body}, headers={"X-API-Key": integration.api_key},
        )
        if not reply.ok:
            raise _delivery_error(reply, integration)

    async def send_text(self, integration: KapsoIntegration, chat_id: str, text: str, *,
                        trust: Trust = Trust.TENANT) -> None:
        await self._send(integration, chat_id, {"type": "text", "text": {"preview_url": False, "body": text}})

    async def send_voice(self, integration: KapsoIntegration, chat_id: str, voice: VoiceNote, *,
                         trust: Trust = Trust.TENANT) -> None:
        """Meta's way: upload the audio (POST .../media) and send `audio {id, voice}`; `voice: true`
        (a voice note) only for OGG/Opus, which is what WhatsApp accepts for one."""
        mime = "audio/ogg" if voice.is_ogg else "audio/mpeg"
        media_id = await self._upload(integration, voice.filename, mime, voice.data)
        await self._send(integration, chat_id, {"type": "audio", "audio": {"id": media_id, "voice": voice.is_ogg}})

    async def send_media(self, integration: KapsoIntegration, chat_id: str, media: OutboundMedia, *,
                         trust: Trust = Trust.TENANT) -> None:
        """Uploaded like audio, then `image {id}` (JPEG and PNG, all WhatsApp takes as images) or
        `document {id, filename}`."""
        media_id = await self._upload(integration, media.filename, media.content_type, media.data)
        if media.content_type in WHATSAPP_IMAGE_TYPES:
            await self._send(integration, chat_id, {"type": "image", "image": {"id": media_id}})
        else:
            await self._send(integration, chat_id,
                             {"type": "document", "document": {"id": media_id, "filename": media.filename}})

    async def _upload(self, integration: KapsoIntegration, filename: str, mime: str, data: bytes) -> str:
        """Meta's media upload (POST .../media, multipart); the media id to send."""
        body, content_type = multipart({"messaging_product": "whatsapp", "type": mime}, "file", filename, mime, data)
        reply = await self._http.request_json(
            "POST", self._messages_url(integration).removesuffix("/messages") + "/media", provider=PROVIDER,
            trust=Trust.OPERATOR, data=body, headers={"X-API-Key": integration.api_key, "Content-Type": content_type},
        )
        if not reply.ok:
            raise _delivery_error(reply, integration)
        media_id = reply.body.get("id") if isinstance(reply.body, dict) else None
        if not isinstance(media_id, str) or not media_id:
            raise DeliveryError("Kapso accepted the media upload but gave no media id", retryable=True)
        return media_id

    async def send_template(
        self, integration: KapsoIntegration, chat_id: str, template_name: str, text: str, *,
        language: str = DEFAULT_TEMPLATE_LANGUAGE,
    ) -> None:
        """Sends an approved template whose body has a {{text}} parameter; allowed outside the window."""
        parameter = {"type": "text", "parameter_name": TEMPLATE_TEXT_PARAMETER, "text": text}
        template = {"name": template_name, "language": {"code": language},
                    "components": [{"type": "body", "parameters": [parameter]}]}
        await self._send(integration, chat_id, {"type": "template", "template": template})

    async def fetch_media(self, integration: KapsoIntegration, media: MediaRef) -> bytes | None:
        """HTTPS links and Kapso's own host only; the API key goes only to Kapso's own host."""
        own = bool(media.url) and str(media.url).startswith(f"{self._api_url}/")
        if not media.url or not (own or media.url.startswith("https://")):
            return None
        if own:  # Kapso's own host is the operator's configuration; the key does not follow a redirect away
            key = {"X-API-Key": integration.api_key}
            return await self._http.download(media.url, trust=Trust.OPERATOR, headers=key)
        return await self._http.download(media.url)


def _events(payload: Any) -> Iterator[dict[str, Any]]:
    """Kapso v2 events: a single one, a batch `{"batch": true, "data": [...]}`, or a raw Meta forward
    (rewritten to the v2 shape: `{message (inbound), conversation, phone_number_id}`)."""
    if not isinstance(payload, dict):
        return
    if payload.get("batch") is True and isinstance(payload.get("data"), list):
        yield from (item for item in payload["data"] if isinstance(item, dict))
    elif payload.get("object") == META_OBJECT:
        yield from _meta_events(payload)
    else:
        yield payload


def _meta_events(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in payload.get("entry") or []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata") or {}
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []
                     if isinstance(c, dict)}
            for message in value.get("messages") or []:
                if isinstance(message, dict):
                    yield {
                        "message": {**message, "kapso": {"direction": INBOUND}},
                        "conversation": {"kapso": {"contact_name": names.get(message.get("from"))}},
                        "phone_number_id": metadata.get("phone_number_id"),
                    }
            for _ in [*(value.get("statuses") or []), *(value.get("message_echoes") or [])]:
                yield {}  # counted as ignored


def _kapso(message: dict[str, Any]) -> dict[str, Any]:
    extra = message.get("kapso")
    return extra if isinstance(extra, dict) else {}


def _sender(message: dict[str, Any], conversation: Any) -> str:
    """The contact's wa_id: `message.from`, else the conversation's phone number, digits only."""
    sender = message.get("from")
    if not sender and isinstance(conversation, dict):
        sender = conversation.get("phone_number")
    return "".join(ch for ch in str(sender or "") if ch.isdigit())


def _recipient(message: dict[str, Any], conversation: Any) -> str:
    """Whom an outbound message went to: `message.to`, else the conversation's phone number, digits only."""
    recipient = message.get("to")
    if not recipient and isinstance(conversation, dict):
        recipient = conversation.get("phone_number")
    return "".join(ch for ch in str(recipient or "") if ch.isdigit())


def _name(event: dict[str, Any]) -> str | None:
    conversation = event.get("conversation")
    extra = conversation.get("kapso") if isinstance(conversation, dict) else None
    name = extra.get("contact_name") if isinstance(extra, dict) else None
    return name if isinstance(name, str) and name else None


def _content(message: dict[str, Any]) -> tuple[str, tuple[MediaRef, ...]]:
    """Text and media of one message; a voice note Kapso already transcribed becomes its transcript."""
    kind = message.get("type")
    body = message.get(kind) if isinstance(kind, str) else None
    body = body if isinstance(body, dict) else {}
    extra = _kapso(message)
    if kind == "text":
        return _str(body.get("body")), ()
    if kind == "interactive":  # a tapped reply button or list row
        reply = body.get("button_reply") or body.get("list_reply") or {}
        return _str(reply.get("title")) if isinstance(reply, dict) else "", ()
    if kind == "button":  # a template's quick-reply button
        return _str(body.get("text")), ()
    media_kind = _MEDIA_TYPES.get(str(kind))
    if media_kind is None:
        return "", ()
    transcript = extra.get("transcript")
    if media_kind is MediaKind.AUDIO and isinstance(transcript, dict) and _str(transcript.get("text")):
        return _str(transcript.get("text")), ()
    found = extra.get("media_data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    url = _str(extra.get("media_url")) or _str(data.get("url"))
    caption = _str(body.get("caption"))
    if not url:
        return caption, ()
    media = MediaRef(kind=media_kind, url=url, mime_type=_str(data.get("content_type")) or _str(body.get("mime_type"))
                     or None, filename=_str(data.get("filename")) or _str(body.get("filename")) or None)
    return caption, (media,)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _delivery_error(reply: ProviderReply, integration: KapsoIntegration) -> DeliveryError:
    """Graph's `{"error": {"message", "code", "error_data": {"details"}}}`, or Kapso's `{"error": "..."}`."""
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if code == WINDOW_CLOSED_CODE:
        return OutsideWindow()
    if isinstance(error, dict):
        details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
        detail = " - ".join(_str(part) for part in (error.get("message"), details) if _str(part))
    else:
        detail = _str(error)
    failure = status_error(PROVIDER, reply, detail, secrets=(integration.api_key, integration.webhook_secret_key))
    if code in THROTTLED_CODES and not failure.retryable:
        return DeliveryError(failure.message, retryable=True, retry_after=retry_after(reply.headers))
    return failure
