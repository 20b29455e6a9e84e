"""Z-API (z-api.io), WhatsApp through a WhatsApp Web session.

Outbound: `POST {api_url}/instances/{instanceId}/token/{instanceToken}/send-text` `{phone, message,
delayTyping}` with the `Client-Token` header when the account token is configured. Z-API has no
separate typing call: `delayTyping` makes it show "typing..." for a second before each message.

Inbound: `ReceivedCallback` webhooks only; everything else (delivery and status callbacks, own
messages, groups unless allowed, newsletters, broadcasts, status replies, "waiting for this
message" placeholders, edits, notifications) is ignored, so a bot never answers itself.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botline.channels.base import ChannelAdapter, InboundMessage, ParsedWebhook, VoiceNote
from botline.channels.provider_http import ProviderHttp, status_error
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import GroupPolicy, IntegrationType, ZapiIntegration
from botline.egress import Trust
from botline.media import WHATSAPP_DOCUMENT_BYTES, WHATSAPP_IMAGE_BYTES, OutboundMedia

PROVIDER = "Z-API"
RECEIVED = "ReceivedCallback"
GROUP_SUFFIX = "-group"
NEWSLETTER_SUFFIX = "@newsletter"
TYPING_SECONDS = 1
"""`delayTyping` on every send: Z-API shows "typing..." this long (1-15 s) before the message."""
WHATSAPP_TEXT_LIMIT = 4096
"""WhatsApp takes ~65,536 characters, but a wall of text is unreadable on a phone; 4096 also matches
Meta's Cloud API (Kapso), so an answer is chunked the same way on every WhatsApp provider."""
IGNORED_FLAGS = ("isNewsletter", "broadcast", "isStatusReply", "waitingMessage", "isEdit")
"""ReceivedCallback flags that are never answered: channel posts, broadcast lists, replies to a Status,
content-less placeholders, and edits of a message that was already answered."""
_MEDIA_FIELDS = (
    ("image", "imageUrl", MediaKind.IMAGE),
    ("audio", "audioUrl", MediaKind.AUDIO),
    ("document", "documentUrl", MediaKind.DOCUMENT),
)


class ZapiAdapter(ChannelAdapter[ZapiIntegration]):
    kind = IntegrationType.ZAPI
    max_text_length = WHATSAPP_TEXT_LIMIT
    max_image_bytes = WHATSAPP_IMAGE_BYTES
    max_document_bytes = WHATSAPP_DOCUMENT_BYTES

    def __init__(self, http: ProviderHttp, api_url: str) -> None:
        self._http = http
        self._api_url = api_url.rstrip("/")

    def verify(self, integration: ZapiIntegration, headers: Mapping[str, str], body: bytes) -> None:
        """Z-API signs nothing and sends no auth header: the secret token in the webhook URL (checked
        before this is called) is the only proof the request comes from Z-API. Nothing to add here."""

    def parse(self, integration: ZapiIntegration, payload: Any) -> ParsedWebhook:
        message = self._message(integration, payload)
        return ParsedWebhook(messages=[message]) if message else ParsedWebhook(ignored=1)

    def _message(self, integration: ZapiIntegration, payload: Any) -> InboundMessage | None:
        if not isinstance(payload, dict) or payload.get("type") != RECEIVED:
            return None  # DeliveryCallback, MessageStatusCallback, presence, connection events
        phone, message_id = payload.get("phone"), payload.get("messageId")
        if not isinstance(phone, str) or not phone or not isinstance(message_id, str) or not message_id:
            return None
        is_group = bool(payload.get("isGroup")) or phone.endswith(GROUP_SUFFIX)
        if is_group and integration.group_policy is not GroupPolicy.ALL:
            return None
        if any(payload.get(flag) for flag in IGNORED_FLAGS) or phone.endswith(NEWSLETTER_SUFFIX):
            return None
        if payload.get("notification"):  # group joins, E2E notices, missed calls, revokes
            return None
        operator = bool(payload.get("fromMe"))
        if operator and (payload.get("fromApi") is not False or is_group):
            # fromMe arrives only with "notify sent by me" on. Sent through the API (botline's own replies,
            # `fromApi: true`, or a copy that does not say): an echo, never answered (loops). Typed on the
            # phone (`fromApi: false`) in a one-to-one chat: a person taking over (docs/handoff.md).
            return None
        text = _text(payload)
        media = _media(payload)
        if not text and not media:
            return None  # reactions, stickers, locations, contacts...
        return InboundMessage(
            provider_message_id=message_id, chat_id=phone, text=text,
            sender_name=None if operator else  # on a fromMe copy the names are the contact's
            _str_or_none(payload.get("senderName")) or _str_or_none(payload.get("chatName")),
            media=media, timestamp=_timestamp(payload.get("momment")), operator=operator,
        )

    def _url(self, integration: ZapiIntegration, endpoint: str) -> str:
        return f"{self._api_url}/instances/{integration.instance_id}/token/{integration.instance_token}/{endpoint}"

    def _headers(self, integration: ZapiIntegration) -> dict[str, str]:
        return {"Client-Token": integration.client_token} if integration.client_token else {}

    async def send_text(self, integration: ZapiIntegration, chat_id: str, text: str, *,
                        trust: Trust = Trust.TENANT) -> None:
        await self._send(integration, "send-text", {"phone": chat_id, "message": text, "delayTyping": TYPING_SECONDS})

    async def send_voice(self, integration: ZapiIntegration, chat_id: str, voice: VoiceNote, *,
                         trust: Trust = Trust.TENANT) -> None:
        """send-audio with the audio inline as a data: URL (botline serves no public media URLs);
        `waveform` makes WhatsApp draw it as a recorded voice note."""
        data_url = f"data:{voice.content_type};base64,{base64.b64encode(voice.data).decode()}"
        await self._send(integration, "send-audio", {"phone": chat_id, "audio": data_url, "waveform": True})

    async def send_media(self, integration: ZapiIntegration, chat_id: str, media: OutboundMedia, *,
                         trust: Trust = Trust.TENANT) -> None:
        """send-image, or send-document/{extension} with the file name; the bytes inline as a data: URL."""
        data_url = f"data:{media.content_type};base64,{base64.b64encode(media.data).decode()}"
        if media.is_image:
            await self._send(integration, "send-image", {"phone": chat_id, "image": data_url})
            return
        extension = media.filename.rsplit(".", 1)[-1].lower() if "." in media.filename else "bin"
        await self._send(integration, f"send-document/{extension}",
                         {"phone": chat_id, "document": data_url, "fileName": media.filename})

    async def _send(self, integration: ZapiIntegration, endpoint: str, body: dict[str, Any]) -> None:
        reply = await self._http.request_json(  # the API base is the operator's (providers.zapi.api_url)
            "POST", self._url(integration, endpoint), provider=PROVIDER, trust=Trust.OPERATOR, json=body,
            headers=self._headers(integration),
        )
        if not reply.ok:
            secrets = (integration.instance_token, integration.client_token)
            raise status_error(PROVIDER, reply, _error_detail(reply.body), secrets=secrets)

    async def fetch_media(self, integration: ZapiIntegration, media: MediaRef) -> bytes | None:
        """Z-API media URLs are plain HTTPS links to its storage (valid 30 days); no credentials are sent.
        Anything else is not fetched: the webhook is authenticated by its URL only, and a forged payload
        must not make botline fetch internal http:// addresses."""
        if not media.url or not media.url.startswith("https://"):
            return None
        return await self._http.download(media.url)


def _text(payload: dict[str, Any]) -> str:
    for field, key in (("text", "message"), ("image", "caption"), ("video", "caption"), ("document", "caption")):
        value = payload.get(field)
        if isinstance(value, dict) and isinstance(value.get(key), str) and value[key].strip():
            return str(value[key])
    return ""


def _media(payload: dict[str, Any]) -> tuple[MediaRef, ...]:
    found: list[MediaRef] = []
    for field, url_key, kind in _MEDIA_FIELDS:
        item = payload.get(field)
        if isinstance(item, dict) and isinstance(item.get(url_key), str) and item[url_key]:
            found.append(MediaRef(
                kind=kind, url=item[url_key], mime_type=_str_or_none(item.get("mimeType")),
                filename=_str_or_none(item.get("fileName")),
            ))
    return tuple(found)


def _timestamp(value: Any) -> datetime | None:
    """`momment` is epoch milliseconds (Z-API's spelling)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def _error_detail(body: Any) -> str | None:
    """Z-API errors: `{"error": "..."}` or `{"error": "BAD_REQUEST", "message": "..."}`."""
    if not isinstance(body, dict):
        return None
    parts = [str(body[key]) for key in ("error", "message") if isinstance(body.get(key), str)]
    return " - ".join(parts) or None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
