"""Chatwoot, as an Agent Bot (reference: shared/reference/chatwoot-agent-bot.md, Chatwoot 4.9–4.14).

Chatwoot posts the bot's events to its `outgoing_url` (our webhook URL, pasted into the bot's settings:
no registration API for a bot's own token). botline answers through the account API of the installation
the account saved (`baseUrl`, through the egress layer with the account's trust) with the bot's access
token: `POST /api/v1/accounts/{accountId}/conversations/{displayId}/messages`.

Who answers is Chatwoot's conversation status: `pending` is the bot's, anything else a person's. Every
message event carries it (`owner` on the message), and `conversation_opened`, `conversation_resolved`,
`conversation_status_changed` and `conversation_updated` change it without a message (`OwnerChange`).
A handoff decided by botline is told to Chatwoot with `toggle_status` (`open` to the agents, `pending`
back to the bot).

Inbound: `message_created` only. Incoming messages are the customer's; outgoing ones from a `user` are a
human agent's (operator messages); the bot's own echoes (`agent_bot`), templates, activity messages and
private notes are ignored, as are `message_updated` (every delivery status and edit) and
`webwidget_triggered`. Events of another Chatwoot account are ignored, never refused: any non-2xx on a
pending conversation makes Chatwoot open it "due to an error with the agent bot".

Authenticity: the URL token always; with the bot's `secret` saved (Chatwoot 4.13+ signs agent-bot
webhooks) also `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>` with an
`X-Chatwoot-Timestamp` at most five minutes away.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botline.channels.base import (
    ChannelAdapter,
    DeliveryError,
    InboundMessage,
    OwnerChange,
    ParsedWebhook,
    WebhookRejected,
    epoch_seconds,
)
from botline.channels.provider_http import ProviderHttp, status_error
from botline.domain.handoff import Controller
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import ChatwootIntegration, IntegrationType
from botline.egress import Trust

PROVIDER = "Chatwoot"
SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
MAX_SKEW_SECONDS = 300
"""Older signed deliveries are refused (Chatwoot's own advice: about five minutes)."""
TEXT_LIMIT = 4096
"""Chatwoot takes 150,000 characters, but forwards the text to the inbox's channel (WhatsApp, Telegram,
e-mail...): WhatsApp's and Telegram's 4096 keep an answer in the same chunks on every channel."""
BOT_STATUS = "pending"
"""The one status in which the bot answers; `open` is the human agents', `resolved` closed, `snoozed` hidden."""
STATUS_EVENTS = frozenset({"conversation_status_changed", "conversation_updated"})
_OWNER_BY_EVENT = {"conversation_opened": Controller.HUMAN, "conversation_resolved": Controller.BOT}
_OWNER_BY_STATUS = {"pending": Controller.BOT, "resolved": Controller.BOT,
                    "open": Controller.HUMAN, "snoozed": Controller.HUMAN}
"""Resolved gives the chat back to the bot: the customer's next message reopens it as `pending`."""
_MEDIA_KINDS = {"image": MediaKind.IMAGE, "audio": MediaKind.AUDIO, "file": MediaKind.DOCUMENT}


class ChatwootAdapter(ChannelAdapter[ChatwootIntegration]):
    kind = IntegrationType.CHATWOOT
    max_text_length = TEXT_LIMIT

    def __init__(self, http: ProviderHttp) -> None:
        self._http = http

    def verify(self, integration: ChatwootIntegration, headers: Mapping[str, str], body: bytes) -> None:
        secret = integration.webhook_secret
        if not secret:
            return  # before 4.13 agent-bot webhooks were unsigned: the URL token is the credential
        timestamp, given = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
        if not timestamp.isdigit() or not given:
            raise WebhookRejected(401, f"The webhook has no {SIGNATURE_HEADER} (the bot's secret is configured).")
        if abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
            raise WebhookRejected(401, f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_SECONDS} seconds away.")
        if not hmac.compare_digest(given.encode(), signature(secret, timestamp, body).encode()):
            raise WebhookRejected(401, f"{SIGNATURE_HEADER} does not match the configured webhook secret.")

    def parse(self, integration: ChatwootIntegration, payload: Any) -> ParsedWebhook:
        if not isinstance(payload, dict):
            return ParsedWebhook(ignored=1)
        event = payload.get("event")
        if event == "message_created":
            message = self._message(integration, payload)
            return ParsedWebhook(messages=[message]) if message is not None else ParsedWebhook(ignored=1)
        change = _owner_change(event, payload)
        return ParsedWebhook(owners=[change]) if change is not None else ParsedWebhook(ignored=1)

    def _message(self, integration: ChatwootIntegration, payload: dict[str, Any]) -> InboundMessage | None:
        account = payload.get("account")
        if isinstance(account, dict) and account.get("id") != integration.account_id:
            return None
        conversation, sender = payload.get("conversation"), payload.get("sender")
        display_id = conversation.get("id") if isinstance(conversation, dict) else None
        message_id = payload.get("id")
        if not _is_id(display_id) or not _is_id(message_id) or payload.get("private") is True:
            return None
        assert isinstance(conversation, dict)
        kind = payload.get("message_type")
        sender = sender if isinstance(sender, dict) else {}
        if kind == "outgoing" and sender.get("type") != "user":
            return None  # the bot's own replies (agent_bot) and system messages come back too
        if kind not in ("incoming", "outgoing"):
            return None  # templates and activity messages
        content = payload.get("content")
        text = content if isinstance(content, str) else ""
        media = _media(payload.get("attachments"))
        if not text.strip() and not media:
            return None
        name = sender.get("name")
        status = conversation.get("status")
        return InboundMessage(
            provider_message_id=str(message_id), chat_id=str(display_id), text=text,
            sender_name=name if isinstance(name, str) and name else None, media=media,
            timestamp=_moment(payload.get("created_at")), operator=kind == "outgoing",
            owner=Controller.BOT if status == BOT_STATUS else Controller.HUMAN,
        )

    def _conversation_url(self, integration: ChatwootIntegration, chat_id: str, action: str) -> str:
        if not chat_id.isdigit():  # a display id; anything else must never reach the path
            raise DeliveryError(f"{chat_id!r} is not a Chatwoot conversation id", retryable=False)
        return (f"{integration.base_url}/api/v1/accounts/{integration.account_id}/conversations/"
                f"{chat_id}/{action}")

    async def _post(self, integration: ChatwootIntegration, chat_id: str, action: str, body: dict[str, Any],
                    trust: Trust) -> None:
        """baseUrl was saved by the account: `trust` is its owner's (an admin's Chatwoot on the private
        network works; a tenant's gets the egress policy)."""
        reply = await self._http.request_json(
            "POST", self._conversation_url(integration, chat_id, action), provider=PROVIDER, trust=trust,
            json=body, headers={"api_access_token": integration.access_token},
        )
        if not reply.ok:
            raise status_error(PROVIDER, reply, _error_detail(reply.body), secrets=(integration.access_token,))

    async def send_text(self, integration: ChatwootIntegration, chat_id: str, text: str, *,
                        trust: Trust = Trust.TENANT) -> None:
        body = {"content": text, "message_type": "outgoing", "private": False, "content_type": "text"}
        await self._post(integration, chat_id, "messages", body, trust)

    async def set_owner(self, integration: ChatwootIntegration, chat_id: str, owner: Controller, *,
                        trust: Trust = Trust.TENANT) -> None:
        """`toggle_status`: `open` hands a pending conversation to the agents (Chatwoot's bot handoff),
        `pending` gives it back to the bot."""
        status = "open" if owner is Controller.HUMAN else BOT_STATUS
        await self._post(integration, chat_id, "toggle_status", {"status": status}, trust)

    async def fetch_media(self, integration: ChatwootIntegration, media: MediaRef) -> bytes | None:
        return await self._http.download(media.url) if media.url else None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _owner_change(event: Any, payload: dict[str, Any]) -> OwnerChange | None:
    """Conversation events carry the conversation flat at the root (`id` is its display id)."""
    display_id = payload.get("id")
    if not _is_id(display_id):
        return None
    owner = _OWNER_BY_EVENT.get(event) if isinstance(event, str) else None
    if owner is None and event in STATUS_EVENTS:
        owner = _OWNER_BY_STATUS.get(_new_status(payload.get("changed_attributes")) or "")
    return OwnerChange(chat_id=str(display_id), owner=owner) if owner is not None else None


def _new_status(changed: Any) -> str | None:
    """`changed_attributes: [{"status": {"previous_value": "pending", "current_value": "open"}}]`."""
    for change in changed if isinstance(changed, list) else []:
        status = change.get("status") if isinstance(change, dict) else None
        if isinstance(status, dict) and isinstance(status.get("current_value"), str):
            return str(status["current_value"])
    return None


def _moment(value: Any) -> datetime | None:
    """The top-level `created_at`: an ISO string after ActiveJob's round trip, epoch seconds elsewhere."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace(" UTC", "+00:00").replace("Z", "+00:00"))
        except ValueError:
            return None
    return epoch_seconds(value)


def _media(attachments: Any) -> tuple[MediaRef, ...]:
    found: list[MediaRef] = []
    for item in attachments if isinstance(attachments, list) else []:
        if not isinstance(item, dict):
            continue
        kind, url = _MEDIA_KINDS.get(str(item.get("file_type"))), item.get("data_url")
        if kind is not None and isinstance(url, str) and url.startswith(("http://", "https://")):
            extension = item.get("extension")
            found.append(MediaRef(kind=kind, url=url,
                                  filename=f"attachment.{extension}" if isinstance(extension, str) else None))
    return tuple(found)


def _error_detail(body: Any) -> str | None:
    """Chatwoot answers errors as `{"error": "..."}` (422, 401) or `{"message": "..."}` (404)."""
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return None
