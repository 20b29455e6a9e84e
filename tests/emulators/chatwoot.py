"""A faithful fake of a Chatwoot account with one agent bot, for tests.

:class:`FakeChatwoot` is a real aiohttp server speaking what an Agent Bot sees of Chatwoot
(shared/reference/chatwoot-agent-bot.md, Chatwoot 4.9–4.14), so the code under test only needs the
installation's base URL pointed at :attr:`FakeChatwoot.url`:

* The account API with the bot's ``api_access_token``, on the bot allow-list only:
  ``POST /api/v1/accounts/{account}/conversations/{display_id}/messages`` ``{content, message_type,
  private, content_type, content_attributes}`` answers the message with an **integer** ``message_type``
  and ``sender.type: "agent_bot"``; ``incoming`` outside an API inbox is 422 "Incoming messages are only
  allowed in Api inboxes"; more than 200 messages a minute in one conversation is 422 "Too many
  messages". ``POST …/toggle_status`` ``{status}``: a bot opening a ``pending`` conversation is
  Chatwoot's bot handoff (``success: null`` in the answer); an empty status toggles open/resolved.
  ``toggle_priority``, ``custom_attributes``, ``assignments``, ``PATCH`` of the conversation and (with
  ``typing=True``, Chatwoot after PR #13705) ``toggle_typing_status`` are accepted. Anything else is 401
  "Access to this endpoint is not authorized for bots"; another account is 401 "Bot is not authorized
  to access this account"; a bad token 401 "Invalid Access Token" (**chosen**: the helper's
  ``render_unauthorized`` text).
* Conversations start ``pending`` (the inbox has an active bot); the ``conversation.id`` of payloads and
  paths is the per-account display id. A contact's message reopens a ``resolved`` conversation as
  ``pending`` and a ``snoozed`` one as ``open``; ``open`` and ``pending`` stay.
* Webhooks to the bot's ``outgoing_url`` (:attr:`webhook_url`): ``message_created`` for **every**
  non-activity message, the bot's own replies and agents' private notes included (string
  ``message_type``, contact senders without ``type``), and ``conversation_opened`` /
  ``conversation_resolved`` plus, unless ``legacy=True`` (before April 2026),
  ``conversation_status_changed`` with ``changed_attributes``. Conversation payloads are flat at the
  root. Each POST has a 5 s timeout; only 429 and 500 are retried (3 attempts, 3 s apart, times
  ``retry_scale``); when a ``message_created`` for a pending conversation finally fails, Chatwoot opens
  the conversation and adds the activity "Conversation was marked open by system due to an error with
  the agent bot." (unless ``keep_pending_on_bot_failure``). With ``secret`` set, deliveries are signed:
  ``X-Chatwoot-Timestamp``, ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "{ts}.{body}")>``
  and ``X-Chatwoot-Delivery`` (kept across retries; timestamp and signature recomputed).

The people around the bot are test controls: :meth:`contact_says`, :meth:`agent_says` (``private=True``
for a note) and :meth:`agent_sets_status`. Each returns once its webhooks were delivered; what the
bot sends through the API emits its webhooks in the background, as Sidekiq does.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.emulators.webhook_pusher import (
    JSON,
    InjectedFailure,
    Instant,
    ProviderEmulator,
    RecordedSend,
    encode_payload,
    serve_forever,
)

__all__ = ["ChatwootConversation", "ChatwootMessage", "FakeChatwoot", "chatwoot_signature"]

MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
STATUSES = ("open", "resolved", "pending", "snoozed")
BOT_FAILURE_ACTIVITY = "Conversation was marked open by system due to an error with the agent bot."
NOT_FOR_BOTS = "Access to this endpoint is not authorized for bots"
_RETRIED = frozenset({429, 500})
_ATTEMPTS = 3
_RETRY_SECONDS = 3.0
_WEBHOOK_TIMEOUT = 5.0
_FLOOD_LIMIT = 200
_BOT_ACTIONS = {("POST", "messages"), ("POST", "toggle_status"), ("POST", "toggle_priority"),
                ("POST", "custom_attributes"), ("POST", "assignments"), ("PATCH", "")}


def chatwoot_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Chatwoot-Signature``: ``sha256=`` + hex HMAC-SHA256 over ``"{timestamp}.{body}"``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass
class ChatwootMessage:
    id: int
    content: str
    message_type: str
    """incoming, outgoing, activity or template."""
    sender: dict[str, Any] | None
    """The webhook sender: a contact (no ``type``), ``{id,name,email,type:"user"}`` or an agent bot."""
    created_at: float
    private: bool = False


@dataclass
class ChatwootConversation:
    display_id: int
    contact_id: int
    contact_name: str
    status: str = "pending"
    messages: list[ChatwootMessage] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    sent_at: deque[float] = field(default_factory=deque)
    """When the bot sent its messages (the flood guard's minute)."""

    def texts(self, message_type: str | None = None) -> list[str]:
        return [m.content for m in self.messages if message_type is None or m.message_type == message_type]


class FakeChatwoot(ProviderEmulator):
    """A fake Chatwoot account and agent bot; use ``async with FakeChatwoot() as chatwoot:``."""

    def __init__(
        self, *, account_id: int = 1, access_token: str = "bot-access-token", secret: str | None = None,
        webhook_url: str | None = None, legacy: bool = False, typing: bool = False, api_inbox: bool = False,
        keep_pending_on_bot_failure: bool = False, host: str = "127.0.0.1", port: int = 0,
        now: Callable[[], float] = time.time, retry_scale: float = 1.0,
    ) -> None:
        super().__init__(host=host, port=port, now=now, retry_scale=retry_scale, webhook_timeout=_WEBHOOK_TIMEOUT)
        self.account_id = account_id
        self.access_token = access_token
        self.secret = secret
        self.webhook_url = webhook_url
        """The bot's outgoing_url; None: no webhooks."""
        self.legacy = legacy
        self.typing = typing
        self.api_inbox = api_inbox
        self.keep_pending_on_bot_failure = keep_pending_on_bot_failure
        self.bot = {"id": 7, "name": "Botline", "type": "agent_bot"}
        self.conversations: dict[int, ChatwootConversation] = {}
        self.toggles: list[RecordedSend] = []
        """Accepted toggle_status calls."""
        self._ids = iter(range(1000, 10**9))

    # -- the people around the bot -------------------------------------------------------------

    async def contact_says(self, text: str, *, conversation: int | None = None, name: str = "Jane",
                           attachments: list[dict[str, Any]] | None = None) -> ChatwootMessage:
        """The customer writes (a new conversation, pending, unless ``conversation`` is given)."""
        talk = self.conversations.get(conversation) if conversation is not None else None
        if talk is None:
            display_id = conversation or len(self.conversations) + 1
            talk = self.conversations[display_id] = ChatwootConversation(display_id, 40 + display_id, name,
                                                                         created_at=self.now())
        if talk.status == "resolved":  # Message#reopen_conversation with an active bot
            await self._set_status(talk, "pending")
        elif talk.status == "snoozed":
            await self._set_status(talk, "open")
        contact = {"id": talk.contact_id, "name": talk.contact_name}
        message = self._add(talk, text, "incoming", contact)
        await self._emit_message(talk, message, attachments=attachments)
        return message

    async def agent_says(self, conversation: int, text: str, *, private: bool = False,
                         name: str = "Paula") -> ChatwootMessage:
        """A human agent replies (or writes a private note). The status does not change (issue #4410)."""
        talk = self.conversations[conversation]
        message = self._add(talk, text, "outgoing", {"id": 3, "name": name, "email": "paula@acme.example",
                                                     "type": "user"}, private=private)
        await self._emit_message(talk, message)
        return message

    async def agent_sets_status(self, conversation: int, status: str) -> None:
        """An agent opens, resolves, snoozes or returns the conversation to pending in the dashboard."""
        await self._set_status(self.conversations[conversation], status)

    def bot_texts(self, conversation: int) -> list[str]:
        """What the bot said in the conversation, in order."""
        talk = self.conversations[conversation]
        return [m.content for m in talk.messages if m.sender is not None and m.sender.get("type") == "agent_bot"]

    # -- payloads ------------------------------------------------------------------------------

    def _add(self, talk: ChatwootConversation, text: str, message_type: str, sender: dict[str, Any] | None,
             *, private: bool = False) -> ChatwootMessage:
        message = ChatwootMessage(next(self._ids), text, message_type, sender, self.now(), private)
        talk.messages.append(message)
        self._changes.notify()
        return message

    def _contact(self, talk: ChatwootConversation) -> dict[str, Any]:
        """Contact#webhook_data: no ``type`` key (removed in PR #6415)."""
        return {"account": self._account(), "additional_attributes": {}, "avatar": "", "custom_attributes": {},
                "email": None, "id": talk.contact_id, "identifier": None, "name": talk.contact_name,
                "phone_number": None, "thumbnail": "", "blocked": False}

    def _account(self) -> dict[str, Any]:
        return {"id": self.account_id, "name": "Acme"}

    def _rest_message(self, talk: ChatwootConversation, message: ChatwootMessage) -> dict[str, Any]:
        """A message as REST answers and ``conversation.messages[]`` show it: integer enums."""
        sender_type = {"agent_bot": "AgentBot", "user": "User"}.get((message.sender or {}).get("type", ""), "Contact")
        return {"id": message.id, "content": message.content, "account_id": self.account_id, "inbox_id": 3,
                "conversation_id": talk.display_id, "message_type": MESSAGE_TYPES[message.message_type],
                "created_at": int(message.created_at), "updated_at": Instant(message.created_at).iso_millis,
                "private": message.private, "status": "sent", "source_id": None, "content_type": "text",
                "content_attributes": {}, "sender_type": sender_type,
                "sender_id": (message.sender or {}).get("id"), "external_source_ids": {},
                "additional_attributes": {}, "processed_message_content": message.content, "sentiment": {}}

    def conversation_data(self, talk: ChatwootConversation) -> dict[str, Any]:
        """Conversations::EventDataPresenter#push_data (no ``account`` key)."""
        last = talk.messages[-1:] if talk.messages else []
        now = int(self.now())
        return {
            "additional_attributes": {}, "can_reply": True, "channel": "Channel::WebWidget",
            "contact_inbox": {"id": 20, "contact_id": talk.contact_id, "inbox_id": 3,
                              "source_id": str(uuid.uuid5(uuid.NAMESPACE_URL, str(talk.contact_id))),
                              "hmac_verified": False},
            "id": talk.display_id, "inbox_id": 3,
            "messages": [self._rest_message(talk, m) for m in last],
            "labels": [], "meta": {"sender": {"id": talk.contact_id, "name": talk.contact_name, "type": "contact"},
                                   "assignee": None, "assignee_type": None, "team": None, "hmac_verified": False},
            "status": talk.status, "custom_attributes": {}, "snoozed_until": None, "unread_count": 1,
            "first_reply_created_at": None, "priority": None, "waiting_since": int(talk.created_at),
            "agent_last_seen_at": 0, "contact_last_seen_at": 0, "last_activity_at": now, "timestamp": now,
            "created_at": int(talk.created_at), "updated_at": self.now(),
        }

    def message_payload(self, talk: ChatwootConversation, message: ChatwootMessage, *,
                        attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """``Message#webhook_data`` plus ``event``: string ``message_type``, ISO ``created_at``."""
        sender = self._contact(talk) if message.message_type == "incoming" else message.sender
        payload: dict[str, Any] = {
            "account": self._account(), "additional_attributes": {}, "content_attributes": {},
            "content_type": "text", "content": message.content, "conversation": self.conversation_data(talk),
            "created_at": Instant(message.created_at).iso_millis, "id": message.id,
            "inbox": {"id": 3, "name": "Website"}, "message_type": message.message_type,
            "private": message.private, "sender": sender, "source_id": None,
        }
        if attachments:
            payload["attachments"] = [{"id": index + 1, "message_id": message.id, "account_id": self.account_id,
                                       **item} for index, item in enumerate(attachments)]
        payload["event"] = "message_created"
        return payload

    # -- delivery ------------------------------------------------------------------------------

    async def _emit_message(self, talk: ChatwootConversation, message: ChatwootMessage, *,
                            attachments: list[dict[str, Any]] | None = None) -> None:
        status = await self.emit(self.message_payload(talk, message, attachments=attachments))
        failed = status is None or not 200 <= status < 300
        if failed and self.webhook_url is not None and talk.status == "pending" \
                and not self.keep_pending_on_bot_failure:  # PR #12379
            self._add(talk, BOT_FAILURE_ACTIVITY, "activity", None)
            await self._set_status(talk, "open")

    async def _set_status(self, talk: ChatwootConversation, status: str) -> None:
        await self._change_status(talk, status)

    def _change_status(self, talk: ChatwootConversation, status: str) -> Coroutine[Any, Any, None]:
        """Changes the status at once (the request's own update); the returned coroutine delivers its
        events (``conversation_opened``/``_resolved`` and ``conversation_status_changed``)."""
        previous, talk.status = talk.status, status
        self._changes.notify()
        payloads: list[dict[str, Any]] = []
        if previous != status:
            event = {"open": "conversation_opened", "resolved": "conversation_resolved"}.get(status)
            if event is not None:
                payloads.append({**self.conversation_data(talk), "event": event})
            if not self.legacy:
                changed = [{"status": {"previous_value": previous, "current_value": status}}]
                payloads.append({**self.conversation_data(talk), "changed_attributes": changed,
                                 "event": "conversation_status_changed"})

        async def deliver() -> None:
            for payload in payloads:
                await self.emit(payload)

        return deliver()

    def webhook_headers(self, body: bytes, delivery: str, *, timestamp: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": JSON, "Accept": JSON}
        if self.secret:
            stamp = timestamp or str(int(self.now()))
            headers.update({"X-Chatwoot-Timestamp": stamp, "X-Chatwoot-Delivery": delivery,
                            "X-Chatwoot-Signature": chatwoot_signature(self.secret, stamp, body)})
        return headers

    async def emit(self, payload: Mapping[str, Any]) -> int | None:
        """POST ``payload`` to the bot's outgoing_url, retrying only 429 and 500; the last status."""
        if self.webhook_url is None:
            return None
        body, delivery = encode_payload(payload), str(uuid.uuid4())
        status: int | None = None
        for attempt in range(1, _ATTEMPTS + 1):
            if attempt > 1:
                await asyncio.sleep(_RETRY_SECONDS * self.retry_scale)
            try:
                status = await self.pusher.post(self.webhook_url, body, self.webhook_headers(body, delivery),
                                                attempt=attempt)
            except (OSError, TimeoutError):
                return None  # connection failures and timeouts are not retried (#15920)
            if status not in _RETRIED:
                break
        return status

    async def push(self, url: str, payload: Mapping[str, Any] | bytes, *,
                   headers: Mapping[str, str] | None = None) -> int:
        body = encode_payload(payload)
        return await self.pusher.post(url, body, headers or self.webhook_headers(body, str(uuid.uuid4())))

    # -- server --------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v1/accounts/{account_id}/{tail:.*}", self._account_api)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._json(404, {"error": "Resource could not be found"})

    async def _account_api(self, request: web.Request) -> web.Response:
        raw, body, _ = await self._read(request)
        record = RecordedSend(request.path.rsplit("/", 1)[-1], request.path, request.headers, body, raw)
        status, answer, after = self._answer(request, body)
        record.status, record.response = status, answer
        self._record(record, message=record.endpoint == "messages")
        if record.endpoint == "toggle_status" and 200 <= status < 300:
            self.toggles.append(record)
        if after is not None:  # the events Sidekiq delivers after the request
            self.pusher.spawn(after)
        if isinstance(answer, web.Response):
            return answer
        return self._json(status, answer) if answer is not None else web.Response(status=status)

    def _answer(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any, Any]:
        token = request.headers.get("api_access_token", "")
        if not hmac.compare_digest(token.encode(), self.access_token.encode()):
            return 401, {"error": "Invalid Access Token"}, None
        if request.match_info["account_id"] != str(self.account_id):
            return 401, {"error": "Bot is not authorized to access this account"}, None
        parts = request.match_info["tail"].strip("/").split("/")
        if len(parts) not in (2, 3) or parts[0] != "conversations" or not parts[1].isdigit():
            return 401, {"error": NOT_FOR_BOTS}, None
        action = parts[2] if len(parts) == 3 else ""
        allowed = _BOT_ACTIONS | ({("POST", "toggle_typing_status")} if self.typing else set())
        if (request.method, action) not in allowed:
            return 401, {"error": NOT_FOR_BOTS}, None
        talk = self.conversations.get(int(parts[1]))
        if talk is None:
            return 404, {"error": "Resource could not be found"}, None
        if action == "messages" and (failure := self._take_failure()) is not None:
            return failure.status, failure, None
        if action == "messages":
            return self._create_message(talk, body)
        if action == "toggle_status":
            return self._toggle(talk, body)
        return 200, None if action == "toggle_typing_status" else {"id": talk.display_id}, None

    def _create_message(self, talk: ChatwootConversation, body: dict[str, Any]) -> tuple[int, Any, Any]:
        message_type = body.get("message_type", "outgoing")
        if message_type not in ("outgoing", "incoming", "template"):
            return 422, {"error": f"'{message_type}' is not a valid message_type"}, None
        if message_type == "incoming" and not self.api_inbox:
            return 422, {"error": "Incoming messages are only allowed in Api inboxes"}, None
        content = body.get("content")
        if not isinstance(content, str) or not content:
            return 422, {"error": "Validation failed: Content can't be blank"}, None
        minute_ago = self.now() - 60
        while talk.sent_at and talk.sent_at[0] < minute_ago:
            talk.sent_at.popleft()
        if len(talk.sent_at) >= _FLOOD_LIMIT:
            return 422, {"error": "Too many messages"}, None
        talk.sent_at.append(self.now())
        message = self._add(talk, content, message_type, dict(self.bot), private=body.get("private") is True)
        answer = {**self._rest_message(talk, message),
                  "sender": {"id": self.bot["id"], "name": self.bot["name"], "avatar_url": "", "type": "agent_bot"}}
        return 200, answer, self.emit(self.message_payload(talk, message))  # the bot hears its own message

    def _toggle(self, talk: ChatwootConversation, body: dict[str, Any]) -> tuple[int, Any, Any]:
        wanted = body.get("status")
        handoff = wanted == "open" and talk.status == "pending"  # bot_handoff!: success stays unset (null)
        if not wanted:
            wanted = "resolved" if talk.status == "open" else "open"
        if wanted not in STATUSES:
            return 422, {"error": f"'{wanted}' is not a valid status"}, None
        after = self._change_status(talk, str(wanted))
        payload = {"success": None if handoff else True, "conversation_id": talk.display_id,
                   "current_status": wanted, "snoozed_until": None}
        return 200, {"meta": {}, "payload": payload}, after

    def _failure_response(self, failure: InjectedFailure) -> web.Response:
        body = failure.body if failure.body is not None else {"error": "Internal Server Error"}
        return self._json(failure.status, body)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: serve a fake Chatwoot account with one agent bot until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.chatwoot", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9104)
    parser.add_argument("--access-token", default="bot-access-token")
    parser.add_argument("--webhook-url", default=None)
    args = parser.parse_args(argv)
    fake = FakeChatwoot(access_token=args.access_token, webhook_url=args.webhook_url, host=args.host, port=args.port)
    serve_forever(fake, lambda _: f"fake Chatwoot listening on {fake.url}")


if __name__ == "__main__":
    main()
