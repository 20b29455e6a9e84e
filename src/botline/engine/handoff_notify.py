"""Telling the operators: a signed webhook and a Telegram chat, for every handoff and resume.

Both go out off the turn (a task per event, kept and awaited at close) through the egress layer; a
failure is logged and never changes the chat's state.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from botline.account_cache import AccountCache
from botline.channels.base import ChannelAdapter, DeliveryError
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Session
from botline.domain.handoff import HandoffTrigger
from botline.domain.integrations import IntegrationType
from botline.egress import Egress, EgressError

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Botline-Signature"
TIMESTAMP_HEADER = "X-Botline-Timestamp"
EVENT_HEADER = "X-Botline-Event"
WEBHOOK_TIMEOUT_SECONDS = 10.0
WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024
PREVIEW_CHARS = 500


class HandoffEventKind(StrEnum):
    STARTED = "handoff.started"
    ENDED = "handoff.ended"
    MESSAGE = "handoff.message"
    """A user message recorded while a person has the chat (so the operator sees it without polling)."""


@dataclass(frozen=True)
class HandoffEvent:
    kind: HandoffEventKind
    session: Session
    client: ChatClient
    trigger: HandoffTrigger
    moment: str
    reason: str | None = None
    agent: str | None = None
    text: str | None = None


def signature(hook_key: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256(account hook key, "{timestamp}.{body}"): the body and the time are
    both covered, so a captured request cannot be replayed later or with another body."""
    digest = hmac.new(hook_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class HandoffNotifier:
    def __init__(
        self, egress: Egress, accounts: AccountCache, adapters: dict[IntegrationType, ChannelAdapter[Any]], *,
        public_url: str,
    ) -> None:
        self._egress = egress
        self._accounts = accounts
        self._telegram = adapters.get(IntegrationType.TELEGRAM)
        self._public_url = public_url.rstrip("/")
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, event: HandoffEvent) -> None:
        settings = event.client.client_parameters.handoff
        wants_telegram = settings.telegram_chat_id and event.kind is not HandoffEventKind.MESSAGE
        if not settings.webhook_url and not wants_telegram:
            return
        task = asyncio.create_task(self._send(event), name=f"handoff-notify:{event.session.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def transcript_url(self, session: Session) -> str:
        return f"{self._public_url}/api/v1/public/chat-clients/{session.access_key}/transcript.json"

    def body(self, event: HandoffEvent) -> dict[str, Any]:
        session = event.session
        return {
            "event": event.kind.value, "moment": event.moment, "chatClientId": event.client.id,
            "sessionId": session.id, "externalUserId": session.tag, "trigger": event.trigger.value,
            "reason": event.reason, "agent": event.agent, "text": event.text,
            "state": (session.handoff.state.value if session.handoff else "bot"),
            "until": session.wire()["handoff"]["until"] if session.handoff else None,
            "transcriptUrl": self.transcript_url(session),
        }

    async def _send(self, event: HandoffEvent) -> None:
        try:
            await asyncio.gather(self._webhook(event), self._telegram_note(event))
        except Exception:  # a notification must never break anything else: logged
            log.exception("handoff notification for session %s failed", event.session.id)

    async def _webhook(self, event: HandoffEvent) -> None:
        url = event.client.client_parameters.handoff.webhook_url
        if not url:
            return
        account = await self._accounts.get(event.client.account_id)
        if account is None:
            return
        body = orjson.dumps(self.body(event))
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", EVENT_HEADER: event.kind.value, TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(account.salt, timestamp, body)}
        try:
            response = await self._egress.request(
                "POST", url, trust=await self._accounts.trust(account.id), data=body, headers=headers,
                timeout=WEBHOOK_TIMEOUT_SECONDS, max_bytes=WEBHOOK_MAX_RESPONSE_BYTES,
            )
        except EgressError as exc:
            log.warning("handoff webhook of client %s failed: %s", event.client.id, exc.message)
            return
        if not response.ok:
            log.warning("handoff webhook of client %s answered HTTP %s", event.client.id, response.status)

    async def _telegram_note(self, event: HandoffEvent) -> None:
        chat_id = event.client.client_parameters.handoff.telegram_chat_id
        integration = event.client.integrations.telegram_integration
        if not chat_id or event.kind is HandoffEventKind.MESSAGE or integration is None or self._telegram is None:
            return
        who = event.session.tag or event.session.id
        if event.kind is HandoffEventKind.STARTED:
            text = f"A person is needed in chat {who} ({event.trigger.value}): {event.reason or 'no reason given'}."
        else:
            text = f"Chat {who} is back with the bot ({event.trigger.value})."
        text = f"{text[:PREVIEW_CHARS]}\n{self.transcript_url(event.session)}"
        try:
            await self._telegram.send_text(integration, chat_id, text, trust=await self._accounts.trust(
                event.client.account_id))
        except DeliveryError as exc:
            log.warning("handoff note to Telegram chat of client %s failed: %s", event.client.id, exc.message)
