"""A faithful fake of Evolution API v2 (read at release 2.3.6), for tests.

:class:`FakeEvolution` is a real aiohttp server with Evolution's routes, guards
and bodies, so the code under test only needs ``endpointUrl`` pointed at
:attr:`FakeEvolution.url`:

* ``POST /message/sendText/{instance}`` ``{number, text, delay?, linkPreview?, quoted?, ...}``
  -> ``201`` with the stored message ("messageRaw": ``key{remoteJid, fromMe: true, id}``,
  ``status: "PENDING"``, ``message{conversation}``, ``messageTimestamp`` ...);
* ``POST /chat/sendPresence/{instance}`` ``{number, presence, delay}`` -> ``201``;
* ``POST /message/sendWhatsAppAudio/{instance}`` ``{number, audio, delay?, encoding?}`` (``audio``: a URL
  or base64; ``audioMessageSchema``) -> ``201`` with a stored ``audioMessage`` (``ptt: true``,
  ``mimetype: "audio/ogg; codecs=opus"``); the decoded bytes are kept in :attr:`FakeEvolution.audio`;
* ``POST /webhook/set/{instance}`` -> ``201`` with the stored webhook row and
  ``GET /webhook/find/{instance}`` -> ``200`` with it (or ``null``);
* the ``apikey`` header guard (global key, or the instance's own token), the
  unknown-instance guard, jsonschema validation errors and the catch-all 404,
  all with Evolution's error body ``{"status", "error", "response": {"message"}}``.

Webhooks use Evolution's envelope ``{event, instance, data, destination,
date_time, sender, server_url, apikey}``. The builders make ``messages.upsert``
(inbound, phone-typed ``fromMe`` echoes, groups ``@g.us``, ``status@broadcast``,
newsletters ``@newsletter``, ``@lid`` senders), ``send.message`` (API sends) and
``messages.update`` (status) events; :meth:`FakeEvolution.push` POSTs one to any
URL, :meth:`FakeEvolution.emit` to the instance's configured webhook with
Evolution's retry policy (10 attempts, 5 s doubling to 300 s with ±20 % jitter,
no retry on 400/401/403/404/422; delays multiplied by ``retry_scale``), honouring
``enabled``, ``events``, ``byEvents`` (URL suffix ``/messages-upsert``) and
``headers`` (a ``jwt_key`` header becomes ``Authorization: Bearer <HS256 JWT>``).
An accepted ``sendText`` emits ``send.message`` when the webhook subscribes to
``SEND_MESSAGE``, never ``messages.upsert`` (as in 2.3.6).

Choices where the reference (provider-protocols.md section 3) is UNCONFIRMED or silent:

* ``/webhook/set`` accepts both the 2.3.6 body ``{"webhook": {enabled, url, headers,
  byEvents, base64, events}}`` and the older flat body ``{url, enabled?,
  webhookByEvents | webhook_by_events, webhookBase64 | webhook_base64, events}``
  the docs show (the accepted shape differs by version); the stored row is the
  Prisma ``Webhook`` model either way.
* ``sendPresence`` answers ``201 {"presence": <presence>}`` (read off the service, not re-checked).
* Injected 429 / 5xx use Evolution's error body with the reason phrase as
  message; Evolution has no send rate limit of its own, so ``Retry-After`` is
  sent only when asked for.
* ``date_time`` is real UTC (Evolution formats local wall-clock time with a ``Z``).
* ``delay`` is recorded but not waited for unless ``honour_delay=True``.
* Webhook headers besides the configured ones: ``Content-Type: application/json``
  and an axios ``User-Agent``.
* Phone-typed ``fromMe`` upserts carry ``status: "SERVER_ACK"``, inbound ones
  ``"DELIVERY_ACK"``; ``key.remoteJidAlt`` / ``participantAlt`` / ``addressingMode``
  appear only for ``@lid`` senders.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.emulators.webhook_pusher import (
    JSON,
    InjectedFailure,
    Instant,
    Payload,
    ProviderEmulator,
    RecordedSend,
    drop_none,
    encode_payload,
    exponential_delays,
    serve_forever,
)

__all__ = ["EVOLUTION_EVENTS", "EvolutionInstance", "FakeEvolution"]

EVOLUTION_EVENTS = [
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
]
"""Every event name Evolution accepts in a webhook configuration (UPPER_SNAKE)."""

NON_RETRYABLE = frozenset({400, 401, 403, 404, 422})
"""Receiver statuses after which Evolution stops retrying a webhook."""

_PRESENCES = ["unavailable", "available", "composing", "recording", "paused"]
_USER_AGENT = "axios/1.7.9"
_DEFAULT_GROUP = "120363025246125486@g.us"
_DEFAULT_NEWSLETTER = "120363166555745933@newsletter"
_MEDIA_URL = "https://mmg.whatsapp.net/v/t62.7118-24/media.enc"
OWNED_MEDIA = "Owned media must be a url or base64"
SendAnswer = Callable[[web.Request, dict[str, Any]], Awaitable[tuple[int, Any, web.Response | None]]]
"""How a send endpoint answers: (status, body, an injected failure to return instead)."""


@dataclass
class EvolutionInstance:
    """One WhatsApp connection of the fake server."""

    name: str
    token: str
    """The instance's own API key (accepted in ``apikey`` on its routes)."""
    instance_id: str
    """The instance's UUID (``data.instanceId`` in payloads)."""
    owner_jid: str
    """The connected number's own JID (``sender`` in webhooks)."""
    webhook: dict[str, Any] | None = None
    """The stored webhook row, as ``/webhook/find`` returns it."""


def _jid(number: str) -> str:
    """Evolution's ``createJid``: JIDs pass through, group ids get ``@g.us``, digits ``@s.whatsapp.net``."""
    if "@" in number:
        return number
    if "-" in number or (len(number) >= 18 and number.startswith("120363")):
        return number + "@g.us"
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits + "@s.whatsapp.net"


def _lid(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit()) or "0"
    return f"{int(digits) * 7 % 10**14 + 10**13}@lid"


def new_send_id() -> str:
    """A Baileys id of a message sent by the server (``3EB0`` + 18 upper-case hex)."""
    return "3EB0" + secrets.token_hex(9).upper()[:18]


def new_inbound_id() -> str:
    """A message id as phones produce them (32 upper-case hex)."""
    return secrets.token_hex(16).upper()


def _cuid() -> str:
    return "c" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(24))


def jwt_hs256(secret: str, payload: Mapping[str, Any]) -> str:
    """A compact HS256 JSON Web Token, as Evolution makes from a ``jwt_key`` webhook header."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(orjson.dumps({"alg": "HS256", "typ": "JWT"})) + "." + b64(orjson.dumps(dict(payload)))
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


class FakeEvolution(ProviderEmulator):
    """A fake Evolution API v2 server; use ``async with FakeEvolution() as evo:``."""

    def __init__(
        self,
        *,
        api_key: str = "evolution-global-api-key",
        instance: str = "botline",
        instance_token: str = "B6D711FCDE4D4FD5936544120E713976",
        owner_phone: str = "5511988887777",
        expose_apikey: bool = False,
        unknown_numbers: Iterable[str] = (),
        honour_delay: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        now: Callable[[], float] = time.time,
        retry_scale: float = 1.0,
        webhook_timeout: float = 30.0,
    ) -> None:
        """Configure the server and its first instance; nothing listens until :meth:`start`.

        ``api_key`` is the global key (``AUTHENTICATION_API_KEY``); ``instance_token``
        the instance's own key. ``expose_apikey`` puts the instance token in each
        webhook's ``apikey`` (``AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES``), else
        null. Numbers in ``unknown_numbers`` are "not on WhatsApp".
        """
        super().__init__(host=host, port=port, now=now, retry_scale=retry_scale, webhook_timeout=webhook_timeout)
        self.api_key = api_key
        self.expose_apikey = expose_apikey
        self.honour_delay = honour_delay
        self.unknown_numbers = {"".join(ch for ch in n if ch.isdigit()) for n in unknown_numbers}
        self.instances: dict[str, EvolutionInstance] = {}
        """Instances by name."""
        self.presences: list[RecordedSend] = []
        """Every ``sendPresence`` request, accepted or not."""
        self.audio: list[bytes] = []
        """Decoded bytes of every accepted sendWhatsAppAudio (b"" for a URL), in order."""
        self.media: list[tuple[str, str, bytes]] = []
        """(mediatype, fileName, decoded bytes) of every accepted sendMedia, in order."""
        self.config_requests: list[RecordedSend] = []
        """Every ``/webhook/set`` and ``/webhook/find`` request, accepted or not."""
        self.instance = instance
        """The name of the first (default) instance."""
        self.add_instance(instance, instance_token, owner_phone=owner_phone)

    def add_instance(
        self, name: str, token: str | None = None, *, owner_phone: str = "5511977776666"
    ) -> EvolutionInstance:
        """Create another instance (its token defaults to a random one)."""
        created = EvolutionInstance(
            name=name,
            token=token or secrets.token_hex(16).upper(),
            instance_id=str(uuid.uuid4()),
            owner_jid=_jid(owner_phone),
        )
        self.instances[name] = created
        return created

    @property
    def default(self) -> EvolutionInstance:
        """The first instance."""
        return self.instances[self.instance]

    @property
    def webhook(self) -> dict[str, Any] | None:
        """The default instance's stored webhook row (None until ``/webhook/set``)."""
        return self.default.webhook

    # -- server ------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/message/sendText/{instanceName}", self._send_text)
        app.router.add_post("/chat/sendPresence/{instanceName}", self._send_presence)
        app.router.add_post("/message/sendWhatsAppAudio/{instanceName}", self._send_audio)
        app.router.add_post("/message/sendMedia/{instanceName}", self._send_media)
        app.router.add_post("/webhook/set/{instanceName}", self._webhook_set)
        app.router.add_get("/webhook/find/{instanceName}", self._webhook_find)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    @staticmethod
    def _error(status: int, error: str, message: Any) -> tuple[int, dict[str, Any]]:
        return status, {"status": status, "error": error, "response": {"message": message}}

    def _guard(self, request: web.Request) -> tuple[int, dict[str, Any]] | None:
        """Evolution's guards in order: the instance exists, then the ``apikey``."""
        name = request.match_info["instanceName"]
        instance = self.instances.get(name)
        if instance is None:
            return self._error(404, "Not Found", [f'The "{name}" instance does not exist'])
        key = request.headers.get("apikey")
        if not key or (key != self.api_key and key != instance.token):
            return self._error(401, "Unauthorized", "Unauthorized")
        return None

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._json(*self._error(404, "Not Found", [f"Cannot {request.method.upper()} {request.path_qs}"]))

    async def _send(self, request: web.Request, endpoint: str, answer: SendAnswer) -> web.Response:
        """One send endpoint: the request recorded, answered, and ``send.message`` fired when it succeeded."""
        raw, body, _ = await self._read(request)
        record = RecordedSend(endpoint, request.path, request.headers, body, raw)
        status, reply, failure = await answer(request, body)
        record.status, record.response = status, reply
        self._record(record)
        if failure is not None:
            return failure
        if 200 <= status < 300:
            self._after_send(self.instances[request.match_info["instanceName"]], reply)
        return self._json(status, reply)

    async def _send_text(self, request: web.Request) -> web.Response:
        return await self._send(request, "sendText", self._send_text_answer)

    async def _send_text_answer(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, Any, web.Response | None]:
        if (denied := self._guard(request)) is not None:
            return *denied, None
        if (failure := self._take_failure()) is not None:
            return failure.status, None, failure
        # textMessageSchema: number {type string, description "Invalid format"}, text {type string},
        # delay {type integer, description "Enter a value in milliseconds"}; no emptiness rule.
        problems = _validate(body, required=("number", "text"), strings=("text",))
        if "number" in body and not isinstance(body["number"], str):
            problems.append("Invalid format")
        if "delay" in body and (not isinstance(body["delay"], int) or isinstance(body["delay"], bool)):
            problems.append("Enter a value in milliseconds")
        if problems:
            return *self._error(400, "Bad Request", problems), None
        text: str = body["text"]
        if not text.strip():  # the service's own check
            return *self._error(400, "Bad Request", ["Text is required"]), None
        number: str = body["number"]
        jid = _jid(number)
        if jid.endswith("@s.whatsapp.net") and (jid == "@s.whatsapp.net" or jid.split("@")[0] in self.unknown_numbers):
            return *self._error(400, "Bad Request", [{"exists": False, "jid": jid, "number": number}]), None
        if self.honour_delay and body.get("delay"):
            await asyncio.sleep(body["delay"] / 1000)
        instance = self.instances[request.match_info["instanceName"]]
        answer = {
            "key": {"remoteJid": jid, "fromMe": True, "id": new_send_id()},
            "pushName": "Você",
            "status": "PENDING",
            "message": {"conversation": text},
            "messageType": "conversation",
            "messageTimestamp": int(self.now()),
            "instanceId": instance.instance_id,
            "source": "web",
        }
        return 201, answer, None

    async def _send_audio(self, request: web.Request) -> web.Response:
        return await self._send(request, "sendWhatsAppAudio", self._send_audio_answer)

    async def _send_audio_answer(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, Any, web.Response | None]:
        """audioMessageSchema: number and audio required (strings); the service takes a URL or base64
        (a data: URL is not base64 to it) and, unless ``encoding`` is false, converts to OGG/Opus."""
        if (denied := self._guard(request)) is not None:
            return *denied, None
        if (failure := self._take_failure()) is not None:
            return failure.status, None, failure
        problems = _validate(body, required=("number", "audio"), strings=("number", "audio"), not_empty=("number",))
        if problems:
            return *self._error(400, "Bad Request", problems), None
        data = _owned_media(body["audio"])
        if data is None:
            return *self._error(400, "Bad Request", [OWNED_MEDIA]), None
        instance = self.instances[request.match_info["instanceName"]]
        jid = _jid(body["number"])
        self.audio.append(data)
        answer = {
            "key": {"remoteJid": jid, "fromMe": True, "id": new_send_id()},
            "pushName": "Você",
            "status": "PENDING",
            "message": {"audioMessage": {"url": "https://mmg.whatsapp.net/v/t62.7114-24/fake.enc",
                                         "mimetype": "audio/ogg; codecs=opus", "seconds": 1, "ptt": True,
                                         "fileLength": str(len(data))}},
            "messageType": "audioMessage",
            "messageTimestamp": int(self.now()),
            "instanceId": instance.instance_id,
            "source": "web",
        }
        return 201, answer, None

    async def _send_media(self, request: web.Request) -> web.Response:
        return await self._send(request, "sendMedia", self._send_media_answer)

    async def _send_media_answer(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, Any, web.Response | None]:
        """mediaMessageSchema: number, mediatype (image|document|video|audio) and media (a URL or plain
        base64) required; mimetype, fileName and caption optional."""
        if (denied := self._guard(request)) is not None:
            return *denied, None
        if (failure := self._take_failure()) is not None:
            return failure.status, None, failure
        problems = _validate(body, required=("number", "mediatype", "media"),
                             strings=("number", "mediatype", "media"), not_empty=("number",))
        if not problems and body["mediatype"] not in ("image", "document", "video", "audio"):
            problems = ["mediatype must be one of image, document, video, audio"]
        if problems:
            return *self._error(400, "Bad Request", problems), None
        data = _owned_media(body["media"])
        if data is None:
            return *self._error(400, "Bad Request", [OWNED_MEDIA]), None
        instance = self.instances[request.match_info["instanceName"]]
        kind, name = body["mediatype"], str(body.get("fileName") or "")
        self.media.append((kind, name, data))
        content: dict[str, Any] = {"url": "https://mmg.whatsapp.net/v/t62.7118-24/fake.enc",
                                   "mimetype": body.get("mimetype") or "application/octet-stream",
                                   "fileLength": str(len(data))}
        if kind == "document":
            content["fileName"] = name
        answer = {
            "key": {"remoteJid": _jid(body["number"]), "fromMe": True, "id": new_send_id()},
            "pushName": "Você",
            "status": "PENDING",
            "message": {f"{kind}Message": content},
            "messageType": f"{kind}Message",
            "messageTimestamp": int(self.now()),
            "instanceId": instance.instance_id,
            "source": "web",
        }
        return 201, answer, None

    def _after_send(self, instance: EvolutionInstance, answer: dict[str, Any]) -> None:
        """API sends fire ``send.message`` (never ``messages.upsert``) to a subscribed webhook."""
        if self._subscribed(instance, "SEND_MESSAGE"):
            self.pusher.spawn(self.emit(self.send_message_event(answer, instance=instance.name)))

    async def _send_presence(self, request: web.Request) -> web.Response:
        raw, body, _ = await self._read(request)
        record = RecordedSend("sendPresence", request.path, request.headers, body, raw)
        if (denied := self._guard(request)) is not None:
            status, answer = denied
        else:
            problems = _validate(
                body, required=("number", "presence", "delay"), strings=("number",), not_empty=("number",)
            )
            if "presence" in body and body["presence"] not in _PRESENCES:
                problems.append(f"presence is not one of enum values: {','.join(_PRESENCES)}")
            if "delay" in body and not isinstance(body["delay"], int):
                problems.append("delay is not of a type(s) integer")
            if problems:
                status, answer = self._error(400, "Bad Request", problems)
            else:
                status, answer = 201, {"presence": body["presence"]}
        record.status, record.response = status, answer
        self.presences.append(record)
        self._record(record, message=False)
        return self._json(status, answer)

    async def _webhook_set(self, request: web.Request) -> web.Response:
        raw, body, _ = await self._read(request)
        record = RecordedSend("webhookSet", request.path, request.headers, body, raw)
        if (denied := self._guard(request)) is not None:
            status, answer = denied
        else:
            status, answer = self._store_webhook(self.instances[request.match_info["instanceName"]], body)
        record.status, record.response = status, answer
        self.config_requests.append(record)
        self._changes.notify()
        return self._json(status, answer)

    def _store_webhook(self, instance: EvolutionInstance, body: dict[str, Any]) -> tuple[int, Any]:
        nested = body.get("webhook")
        if isinstance(nested, dict):  # 2.3.6 schema
            config = nested
            by_events, base64_ = config.get("byEvents"), config.get("base64")
            problems = _validate(
                config, required=("enabled", "url"), strings=("url",), not_empty=("url",), prefix="webhook."
            )
            if "enabled" in config and not isinstance(config["enabled"], bool):
                problems.append("webhook.enabled is not of a type(s) boolean")
        elif "url" in body:  # the older flat schema shown in the docs
            config = {"enabled": body.get("enabled", True), **body}
            by_events = body.get("webhookByEvents", body.get("webhook_by_events"))
            base64_ = body.get("webhookBase64", body.get("webhook_base64"))
            problems = _validate(config, required=("url",), strings=("url",), not_empty=("url",))
        else:
            return self._error(400, "Bad Request", ['instance requires property "webhook"'])
        events = config.get("events") or []
        if not isinstance(events, list):
            problems.append("webhook.events is not of a type(s) array")
            events = []
        for index, event in enumerate(events):
            if event not in EVOLUTION_EVENTS:
                problems.append(f"webhook.events[{index}] is not one of enum values: {','.join(EVOLUTION_EVENTS)}")
        if problems:
            return self._error(400, "Bad Request", problems)
        url = config["url"]
        if not url.startswith(("http://", "https://")):
            return self._error(400, "Bad Request", ['Invalid "url" property'])
        enabled = bool(config.get("enabled"))
        if not enabled:
            events = []
        elif not events:
            events = list(EVOLUTION_EVENTS)
        stamp = Instant(self.now()).iso_millis
        previous = instance.webhook or {}
        instance.webhook = {
            "id": previous.get("id", _cuid()),
            "url": url,
            "headers": config.get("headers"),
            "enabled": enabled,
            "events": events,
            "webhookByEvents": bool(by_events),
            "webhookBase64": bool(base64_),
            "createdAt": previous.get("createdAt", stamp),
            "updatedAt": stamp,
            "instanceId": instance.instance_id,
        }
        return 201, instance.webhook

    async def _webhook_find(self, request: web.Request) -> web.Response:
        record = RecordedSend("webhookFind", request.path, request.headers, {})
        answer: Any
        if (denied := self._guard(request)) is not None:
            status, answer = denied
        else:
            status, answer = 200, self.instances[request.match_info["instanceName"]].webhook
        record.status, record.response = status, answer
        self.config_requests.append(record)
        self._changes.notify()
        return self._json(status, answer)

    def _failure_response(self, failure: InjectedFailure) -> web.Response:
        if failure.body is not None:
            return self._json(failure.status, failure.body)
        reason = {
            429: "Too Many Requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }.get(failure.status, "Error")
        return self._json(*self._error(failure.status, reason, reason))

    # -- webhook payloads --------------------------------------------------------------------

    def envelope(
        self, event: str, data: Mapping[str, Any], *, instance: str | None = None, destination: str | None = None
    ) -> dict[str, Any]:
        """Evolution's webhook body around ``data``; ``instance`` may name one that does not exist
        (a wrong-instance delivery)."""
        name = instance or self.instance
        known = self.instances.get(name, self.default)
        configured = known.webhook["url"] if known.webhook else ""
        return {
            "event": event,
            "instance": name,
            "data": dict(data),
            "destination": destination if destination is not None else configured,
            "date_time": Instant(self.now()).iso_millis,
            "sender": known.owner_jid,
            "server_url": self.url,
            "apikey": known.token if self.expose_apikey else None,
        }

    def _key(
        self,
        phone: str,
        *,
        message_id: str | None,
        from_me: bool,
        group: bool | str,
        lid: bool,
        newsletter: bool | str,
        status_broadcast: bool,
    ) -> dict[str, Any]:
        sender_jid = _jid(phone)
        key: dict[str, Any] = {"remoteJid": sender_jid, "fromMe": from_me, "id": message_id or new_inbound_id()}
        if lid:
            key["remoteJid"], key["remoteJidAlt"], key["addressingMode"] = _lid(phone), sender_jid, "lid"
        if group or status_broadcast:
            key["remoteJid"] = (
                "status@broadcast" if status_broadcast else _jid(group if isinstance(group, str) else _DEFAULT_GROUP)
            )
            key.pop("remoteJidAlt", None)
            if lid:
                key["participant"], key["participantAlt"] = _lid(phone), sender_jid
            else:
                key["participant"] = sender_jid
        elif newsletter:
            key["remoteJid"] = newsletter if isinstance(newsletter, str) else _DEFAULT_NEWSLETTER
            key.pop("remoteJidAlt", None)
            key.pop("addressingMode", None)
        return key

    def _upsert(
        self,
        phone: str,
        message: dict[str, Any],
        message_type: str,
        *,
        message_id: str | None = None,
        name: str = "Contact",
        from_me: bool = False,
        group: bool | str = False,
        lid: bool = False,
        newsletter: bool | str = False,
        status_broadcast: bool = False,
        timestamp: int | None = None,
        source: str = "android",
        status: str | None = None,
        instance: str | None = None,
        event: str = "messages.upsert",
    ) -> dict[str, Any]:
        key = self._key(
            phone,
            message_id=message_id,
            from_me=from_me,
            group=group,
            lid=lid,
            newsletter=newsletter,
            status_broadcast=status_broadcast,
        )
        known = self.instances.get(instance or self.instance, self.default)
        data = {
            "key": key,
            "pushName": name,
            "status": status or ("SERVER_ACK" if from_me else "DELIVERY_ACK"),
            "message": message,
            "messageType": message_type,
            "messageTimestamp": timestamp if timestamp is not None else int(self.now()),
            "instanceId": known.instance_id,
            "source": source,
        }
        return self.envelope(event, data, instance=instance)

    def text_message(self, phone: str, text: str, *, extended: bool = False, **options: Any) -> dict[str, Any]:
        """A ``messages.upsert`` webhook with a text message from ``phone``.

        Options: ``message_id``, ``name`` (pushName), ``from_me`` (typed on the
        connected phone), ``group`` (True or a group JID/id; ``phone`` becomes
        ``key.participant``), ``lid`` (``@lid`` addressing with ``remoteJidAlt``),
        ``newsletter`` (True or an ``@newsletter`` JID), ``status_broadcast``
        (a reply to a WhatsApp Status), ``timestamp`` (epoch seconds), ``source``,
        ``status``, ``instance`` (any name, e.g. a wrong one), ``event``.
        ``extended`` sends ``extendedTextMessage.text`` as older servers did
        (2.3.6 rewrites it to ``conversation``).
        """
        if extended:
            return self._upsert(phone, {"extendedTextMessage": {"text": text}}, "extendedTextMessage", **options)
        return self._upsert(phone, {"conversation": text, "messageContextInfo": {}}, "conversation", **options)

    def image_message(
        self,
        phone: str,
        *,
        caption: str = "",
        mimetype: str = "image/jpeg",
        base64_data: str | None = None,
        media_url: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """A ``messages.upsert`` with ``imageMessage``; ``base64_data`` fills ``message.base64``
        (webhook ``base64: true``), ``media_url`` fills ``message.mediaUrl`` (S3)."""
        message: dict[str, Any] = {
            "imageMessage": {
                "url": _MEDIA_URL,
                "mimetype": mimetype,
                "caption": caption,
                "fileLength": "20480",
                "height": 1280,
                "width": 720,
                "mediaKey": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        }
        message.update(drop_none({"base64": base64_data, "mediaUrl": media_url}))
        return self._upsert(phone, message, "imageMessage", **options)

    def audio_message(
        self,
        phone: str,
        *,
        seconds: int = 5,
        ptt: bool = True,
        base64_data: str | None = None,
        media_url: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """A ``messages.upsert`` with ``audioMessage`` (``ptt: true`` = voice note)."""
        message: dict[str, Any] = {
            "audioMessage": {
                "url": _MEDIA_URL,
                "mimetype": "audio/ogg; codecs=opus",
                "seconds": seconds,
                "ptt": ptt,
                "fileLength": "8192",
                "mediaKey": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        }
        message.update(drop_none({"base64": base64_data, "mediaUrl": media_url}))
        return self._upsert(phone, message, "audioMessage", **options)

    def send_message_event(self, message_raw: Mapping[str, Any], *, instance: str | None = None) -> dict[str, Any]:
        """The ``send.message`` webhook Evolution fires for a message sent through its API
        (``message_raw`` is the ``sendText`` response)."""
        return self.envelope("send.message", message_raw, instance=instance)

    def status_update(
        self,
        message_id: str,
        phone: str,
        status: str = "DELIVERY_ACK",
        *,
        from_me: bool = True,
        participant: str | None = None,
        instance: str | None = None,
    ) -> dict[str, Any]:
        """A ``messages.update`` webhook; ``status`` in ERROR, PENDING, SERVER_ACK, DELIVERY_ACK,
        READ, PLAYED, DELETED."""
        known = self.instances.get(instance or self.instance, self.default)
        data = drop_none(
            {
                "keyId": message_id,
                "remoteJid": _jid(phone),
                "fromMe": from_me,
                "participant": participant,
                "status": status,
                "instanceId": known.instance_id,
            }
        )
        return self.envelope("messages.update", data, instance=instance)

    # -- delivery ----------------------------------------------------------------------------

    async def push(self, url: str, payload: Payload, *, headers: Mapping[str, str] | None = None) -> int:
        """POST one webhook body to ``url`` as Evolution does (axios JSON); the receiver's status."""
        sent_headers = {"Content-Type": JSON, "User-Agent": _USER_AGENT, **(headers or {})}
        return await self.pusher.post(url, encode_payload(payload), sent_headers)

    def _subscribed(self, instance: EvolutionInstance, event: str) -> bool:
        webhook = instance.webhook
        return bool(webhook and webhook["enabled"] and event in (webhook["events"] or []))

    def webhook_target(self, payload: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
        """Where and with which extra headers Evolution would deliver ``payload``; None if nowhere."""
        instance = self.instances.get(str(payload.get("instance")))
        event = str(payload.get("event", ""))
        upper = event.replace(".", "_").replace("-", "_").upper()
        if instance is None or instance.webhook is None or not self._subscribed(instance, upper):
            return None
        webhook = instance.webhook
        url = webhook["url"]
        if webhook["webhookByEvents"]:
            url = f"{url}/{upper.replace('_', '-').lower()}"
        headers = {str(k): str(v) for k, v in (webhook.get("headers") or {}).items()}
        if "jwt_key" in headers:
            secret = headers.pop("jwt_key")
            issued = int(self.now())
            token = jwt_hs256(secret, {"iat": issued, "exp": issued + 600, "app": "evolution", "action": "webhook"})
            headers["Authorization"] = f"Bearer {token}"
        return url, headers

    async def emit(self, payload: Mapping[str, Any]) -> int | None:
        """Deliver ``payload`` to its instance's configured webhook with Evolution's retries.

        Returns the last receiver status (None if never answered, or not subscribed).
        """
        target = self.webhook_target(payload)
        if target is None:
            return None
        url, headers = target
        body = encode_payload(payload)
        delays = exponential_delays(10, 5.0, 300.0, jitter=0.2, scale=self.retry_scale)
        return await self.pusher.deliver(
            url,
            body,
            {"Content-Type": JSON, "User-Agent": _USER_AGENT, **headers},
            delays=delays,
            give_up=lambda status: status is not None and (200 <= status < 300 or status in NON_RETRYABLE),
        )


def _owned_media(value: str) -> bytes | None:
    """The bytes of a media field: a URL (fetched by the service: no bytes here) or plain base64 (a data:
    URL is not base64 to it); None when it is neither."""
    if value.startswith(("http://", "https://")):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _validate(
    body: Mapping[str, Any],
    *,
    required: tuple[str, ...],
    strings: tuple[str, ...] = (),
    not_empty: tuple[str, ...] = (),
    prefix: str = "",
) -> list[str]:
    """jsonschema-style messages as Evolution's ``dataValidate`` returns them."""
    # jsonschema's stack is "instance[.path] requires property ..."; Evolution strips "instance.".
    owner = prefix[:-1] if prefix else "instance"
    problems = [f'{owner} requires property "{name}"' for name in required if name not in body]
    for name in strings:
        if name in body and not isinstance(body[name], str):
            problems.append(f"{prefix}{name} is not of a type(s) string")
    for name in not_empty:
        if isinstance(body.get(name), str) and body[name] == "":
            problems.append(f'The "{name}" cannot be empty')
    return problems


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: serve a fake Evolution API until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.evolution", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9102)
    parser.add_argument("--api-key", default="evolution-global-api-key", help="the global apikey")
    parser.add_argument("--instance", default="botline")
    parser.add_argument("--instance-token", default="B6D711FCDE4D4FD5936544120E713976")
    args = parser.parse_args(argv)
    fake = FakeEvolution(api_key=args.api_key, instance=args.instance, instance_token=args.instance_token,
                         host=args.host, port=args.port)
    serve_forever(fake, lambda _: f"fake Evolution API listening on {fake.url} (instance {fake.instance})")


if __name__ == "__main__":
    main()
