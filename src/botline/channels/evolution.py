"""Evolution API v2 (read at 2.3.6), WhatsApp through Baileys; the server is the user's own (endpointUrl).

Outbound: `POST {endpointUrl}/message/sendText/{instanceName}` `{number, text}` with the `apikey`
header; typing is `POST /chat/sendPresence/{instanceName}` `{number, presence: "composing", delay}`.
Saving the integration registers our webhook (`POST /webhook/set/{instanceName}`, MESSAGES_UPSERT only,
media inline as base64).

Inbound: `messages.upsert` from contacts only. Own messages never come back as upserts of other people:
phone-typed ones have `key.fromMe`, API sends arrive as `send.message`; both are ignored, as are status
updates, groups (unless allowed), Status broadcasts and newsletters.

Chat ids: a contact is its phone number (digits), which sendText accepts as `number`; a contact known
only by a privacy id (`@lid`, no `remoteJidAlt`) and a group keep their full JID, which sendText also
accepts.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from botline.channels.base import (
    ChannelAdapter,
    InboundMessage,
    ParsedWebhook,
    VoiceNote,
    WebhookRejected,
    epoch_seconds,
)
from botline.channels.provider_http import ProviderHttp, status_error
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import EvolutionIntegration, GroupPolicy, IntegrationType
from botline.egress import Trust
from botline.media import WHATSAPP_DOCUMENT_BYTES, WHATSAPP_IMAGE_BYTES, OutboundMedia

PROVIDER = "Evolution API"
UPSERT = "messages.upsert"
USER_SUFFIX = "@s.whatsapp.net"
LID_SUFFIX = "@lid"
GROUP_SUFFIX = "@g.us"
IGNORED_SUFFIXES = ("@broadcast", "@newsletter")
"""status@broadcast (replies to a Status) and broadcast lists; newsletter (channel) posts."""
WEBHOOK_EVENTS = ["MESSAGES_UPSERT"]
PRESENCE_MILLIS = 5000
"""How long one "composing" presence lasts; the engine refreshes it every 4 s while the model works."""
WHATSAPP_TEXT_LIMIT = 4096
"""Evolution enforces no limit and WhatsApp takes ~65,536 characters, but a wall of text is unreadable
on a phone; 4096 also matches Meta's Cloud API (Kapso), so answers chunk alike on every WhatsApp provider."""
_MEDIA_TYPES = (
    ("imageMessage", MediaKind.IMAGE),
    ("audioMessage", MediaKind.AUDIO),
    ("documentMessage", MediaKind.DOCUMENT),
)


class EvolutionAdapter(ChannelAdapter[EvolutionIntegration]):
    kind = IntegrationType.EVOLUTION
    max_text_length = WHATSAPP_TEXT_LIMIT
    max_image_bytes = WHATSAPP_IMAGE_BYTES
    max_document_bytes = WHATSAPP_DOCUMENT_BYTES
    can_register_webhook = True

    def __init__(self, http: ProviderHttp) -> None:
        self._http = http

    def verify(self, integration: EvolutionIntegration, headers: Mapping[str, str], body: bytes) -> None:
        """Evolution signs nothing; beyond the URL token, the envelope must name our instance and, when
        Evolution exposes an `apikey` in it, carry our key (so the instance token must be configured as
        apiKey when AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES is on)."""
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise WebhookRejected(400, "The webhook body is not valid JSON.") from None
        if not isinstance(envelope, dict):
            raise WebhookRejected(400, "The webhook body is not an Evolution API event.")
        instance = envelope.get("instance")
        if not isinstance(instance, str) or not _same(instance, integration.instance_name):
            raise WebhookRejected(403, "The event is not for the configured Evolution instance.")
        given = envelope.get("apikey")
        if given is not None and not (isinstance(given, str) and _same(given, integration.api_key)):
            raise WebhookRejected(401, "The event's apikey does not match the configured Evolution API key.")

    def parse(self, integration: EvolutionIntegration, payload: Any) -> ParsedWebhook:
        if not isinstance(payload, dict) or _event(payload.get("event")) != UPSERT:
            return ParsedWebhook(ignored=1)  # send.message (our own sends), messages.update, connection...
        data = payload.get("data")
        items = data if isinstance(data, list) else [data]
        messages = [m for m in (self._message(integration, item) for item in items) if m is not None]
        return ParsedWebhook(messages=messages, ignored=len(items) - len(messages))

    def _message(self, integration: EvolutionIntegration, data: Any) -> InboundMessage | None:
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, dict):
            return None
        # API sends (botline's replies) come as send.message, never as upserts; a fromMe upsert was typed on
        # the connected phone: a person taking over a one-to-one chat (docs/handoff.md).
        operator = bool(key.get("fromMe"))
        remote, message_id = key.get("remoteJid"), key.get("id")
        if not isinstance(remote, str) or not isinstance(message_id, str) or not message_id:
            return None
        if remote.endswith(IGNORED_SUFFIXES):
            return None
        if remote.endswith(GROUP_SUFFIX) and (operator or integration.group_policy is not GroupPolicy.ALL):
            return None
        content = data.get("message")
        if not isinstance(content, dict):
            return None
        text, media = _text(content), _media(content)
        if not text and not media:
            return None  # reactions, protocol messages, stickers, locations...
        push_name = None if operator else data.get("pushName")  # "Você" for the phone's own messages
        return InboundMessage(
            provider_message_id=message_id, chat_id=_chat_id(key), text=text,
            sender_name=push_name if isinstance(push_name, str) and push_name else None, media=media,
            timestamp=epoch_seconds(data.get("messageTimestamp")), operator=operator,
        )

    def _headers(self, integration: EvolutionIntegration) -> dict[str, str]:
        return {"apikey": integration.api_key}

    async def _post(self, integration: EvolutionIntegration, path: str, body: dict[str, Any], trust: Trust) -> None:
        """endpointUrl was saved by the account: `trust` is its owner's (an admin's self-hosted Evolution
        on localhost works; a tenant's gets the egress policy)."""
        reply = await self._http.request_json(
            "POST", f"{integration.endpoint_url}/{path}/{integration.instance_name}",
            provider=PROVIDER, trust=trust, json=body, headers=self._headers(integration),
        )
        if not reply.ok:
            raise status_error(PROVIDER, reply, _error_detail(reply.body), secrets=(integration.api_key,))

    async def send_text(self, integration: EvolutionIntegration, chat_id: str, text: str, *,
                        trust: Trust = Trust.TENANT) -> None:
        await self._post(integration, "message/sendText", {"number": chat_id, "text": text}, trust)

    async def send_voice(self, integration: EvolutionIntegration, chat_id: str, voice: VoiceNote, *,
                         trust: Trust = Trust.TENANT) -> None:
        """sendWhatsAppAudio (a recorded voice note, ptt) with the audio as plain base64; Evolution itself
        re-encodes to OGG/Opus unless told `encoding: false`, which is safe only for OGG input."""
        body = {"number": chat_id, "audio": base64.b64encode(voice.data).decode(), "encoding": not voice.is_ogg}
        await self._post(integration, "message/sendWhatsAppAudio", body, trust)

    async def send_media(self, integration: EvolutionIntegration, chat_id: str, media: OutboundMedia, *,
                         trust: Trust = Trust.TENANT) -> None:
        """sendMedia with `mediatype` image or document and the file as plain base64."""
        body = {"number": chat_id, "mediatype": "image" if media.is_image else "document",
                "mimetype": media.content_type, "media": base64.b64encode(media.data).decode(),
                "fileName": media.filename}
        await self._post(integration, "message/sendMedia", body, trust)

    async def typing(self, integration: EvolutionIntegration, chat_id: str, *, trust: Trust = Trust.TENANT) -> None:
        body = {"number": chat_id, "presence": "composing", "delay": PRESENCE_MILLIS}
        await self._post(integration, "chat/sendPresence", body, trust)

    async def register_webhook(self, integration: EvolutionIntegration, url: str, *,
                               trust: Trust = Trust.TENANT) -> None:
        """The 2.3.6 body. `base64: true` puts received media in the event, since Baileys' own media
        URLs are encrypted; byEvents stays off so the URL is used as given."""
        webhook = {"enabled": True, "url": url, "byEvents": False, "base64": True, "events": WEBHOOK_EVENTS}
        await self._post(integration, "webhook/set", {"webhook": webhook}, trust)

    async def fetch_media(self, integration: EvolutionIntegration, media: MediaRef) -> bytes | None:
        if media.data_base64:
            try:
                return base64.b64decode(media.data_base64, validate=True)
            except (binascii.Error, ValueError):
                return None
        return await self._http.download(media.url) if media.url else None  # S3 mediaUrl


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _event(value: Any) -> str:
    """`messages.upsert` (webhooks) or `MESSAGES_UPSERT` (config spelling) -> `messages.upsert`."""
    return value.lower().replace("_", ".") if isinstance(value, str) else ""


def _chat_id(key: dict[str, Any]) -> str:
    """The phone number for a contact; the full JID for a group or an unresolved @lid."""
    jid = str(key["remoteJid"])
    if jid.endswith(LID_SUFFIX):
        for alternative in (key.get("remoteJidAlt"), key.get("senderPn")):  # senderPn: before 2.3
            if isinstance(alternative, str) and alternative.endswith(USER_SUFFIX):
                jid = alternative
                break
    if jid.endswith(USER_SUFFIX):
        return jid.removesuffix(USER_SUFFIX).split(":", 1)[0]  # drop a device suffix "…:12"
    return jid


def _text(content: dict[str, Any]) -> str:
    conversation = content.get("conversation")
    if isinstance(conversation, str) and conversation.strip():
        return conversation
    for field, key in (("extendedTextMessage", "text"), ("imageMessage", "caption"), ("videoMessage", "caption"),
                       ("documentMessage", "caption")):
        value = content.get(field)
        if isinstance(value, dict) and isinstance(value.get(key), str) and value[key].strip():
            return str(value[key])
    return ""


def _media(content: dict[str, Any]) -> tuple[MediaRef, ...]:
    """Media travel inline (`message.base64`, webhook base64 on) or as `message.mediaUrl` (S3)."""
    inline, url = content.get("base64"), content.get("mediaUrl")
    if not (isinstance(inline, str) and inline) and not (isinstance(url, str) and url):
        return ()
    for field, kind in _MEDIA_TYPES:
        item = content.get(field)
        if isinstance(item, dict):
            mime = item.get("mimetype")
            name = item.get("fileName")
            return (MediaRef(
                kind=kind, data_base64=inline if isinstance(inline, str) and inline else None,
                url=url if isinstance(url, str) and url else None, mime_type=mime if isinstance(mime, str) else None,
                filename=name if isinstance(name, str) else None,
            ),)
    return ()


def _error_detail(body: Any) -> str | None:
    """Evolution errors: `{"status", "error", "response": {"message": <string | list>}}`."""
    if not isinstance(body, dict):
        return None
    response = body.get("response")
    message = response.get("message") if isinstance(response, dict) else None
    items = message if isinstance(message, list) else [message]
    parts: list[str] = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict) and item.get("exists") is False:
            parts.append(f"{item.get('number') or item.get('jid')} is not on WhatsApp")
        elif item is not None:
            parts.append(str(item))
    if not parts and isinstance(body.get("error"), str):
        parts.append(body["error"])
    return "; ".join(parts) or None
