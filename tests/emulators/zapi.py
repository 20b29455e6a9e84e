"""A faithful fake of Z-API (z-api.io), the WhatsApp Web-based API, for tests.

:class:`FakeZapi` is a real aiohttp server. Its API lives under
``/instances/{instanceId}/token/{instanceToken}/`` exactly as on
``https://api.z-api.io``, so the code under test only needs ``api_url``
pointed at :attr:`FakeZapi.url`:

* ``POST send-text`` ``{phone, message, delayMessage?, delayTyping?, editMessageId?}``
  -> ``200 {"zaapId", "messageId", "id"}``; also ``send-image`` and ``send-audio``.
* the ``Client-Token`` header (account security token), checked when the
  emulator is configured with one;
* the webhook-URL ``PUT``s (``update-webhook-received`` ...,
  ``update-every-webhooks``, ``update-notify-sent-by-me``) answering ``{"value": true}``.

Webhook payloads (``ReceivedCallback``, ``DeliveryCallback``,
``MessageStatusCallback``) come from the builders (:meth:`FakeZapi.text_message`
and friends) and are POSTed by :meth:`FakeZapi.push` (to any URL) or
:meth:`FakeZapi.emit` (to the URL configured for that callback type). After an
accepted send the emulator, like Z-API, emits a ``DeliveryCallback`` when a
delivery webhook is configured and, when "notify sent by me" is on, a
``fromMe: true`` copy of the message to the received webhook.

Choices where the reference (provider-protocols.md section 2) is UNCONFIRMED:

* Missing ``Client-Token``: HTTP 400 with the documented body
  ``{"error": "null not allowed"}`` (the docs give no status; community code
  reports 400, and also the wording ``"your client-token is not configured"``).
* Wrong ``Client-Token``: HTTP 403 ``{"error": "Client-Token <value> not allowed"}``
  (community reports; the docs' ``"null not allowed"`` is the same pattern with null).
* Unknown instance id or instance token: HTTP 400 ``{"error": "Instance not found"}``
  (not documented).
* Unknown endpoint: HTTP 404 ``{"error": "NOT_FOUND", "message": "Unable to find
  matching target resource method"}`` (Z-API's JAX-RS answer as seen in community code).
* Missing required field: HTTP 400 ``{"error": "BAD_REQUEST", "message": "<field> is required"}``
  (not documented). Missing JSON ``Content-Type``: 415 (documented), same body shape.
* Injected 429 / 5xx bodies: ``{"error": "<reason phrase>"}``; Z-API documents no
  rate limit and no ``Retry-After``, so the header is sent only when asked for.
* Webhook deliveries: a single attempt (retry policy not documented), no
  signature or auth header (none documented), plain ``http://`` URLs accepted
  (Z-API itself requires https).
* ``status`` of ``fromMe`` copies is ``"SENT"`` and ``fromApi`` is true for API
  sends (the field is seen in Portuguese examples; its meaning is not documented).
"""

from __future__ import annotations

import argparse
import secrets
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from tests.emulators.webhook_pusher import (
    JSON,
    InjectedFailure,
    Payload,
    ProviderEmulator,
    RecordedSend,
    encode_payload,
    serve_forever,
)

__all__ = ["ZAPI_WEBHOOK_KINDS", "FakeZapi"]

_DEFAULT_INSTANCE_ID = "3C0FA2B9D4E5F60718293A4B5C6D7E8F"
_DEFAULT_INSTANCE_TOKEN = "A1B2C3D4E5F60718293A4B5C"
_DEFAULT_CONNECTED_PHONE = "5511900000000"
_PHOTO = "https://pps.whatsapp.net/v/t61.24694-24/photo.jpg"
_MEDIA = "https://storage.z-api.io/instances/media"
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}

ZAPI_WEBHOOK_KINDS = {
    "update-webhook-received": "received",
    "update-webhook-received-delivery": "received_delivery",
    "update-webhook-delivery": "delivery",
    "update-webhook-message-status": "message_status",
    "update-webhook-disconnected": "disconnected",
    "update-webhook-connected": "connected",
    "update-webhook-chat-presence": "presence",
}
"""Webhook ``PUT`` endpoint -> key in :attr:`FakeZapi.webhooks`."""

# endpoint -> (required fields, kind of message)
_SENDS: dict[str, tuple[tuple[str, ...], str]] = {
    "send-text": (("phone", "message"), "text"),
    "send-image": (("phone", "image"), "image"),
    "send-audio": (("phone", "audio"), "audio"),
    "send-document": (("phone", "document"), "document"),
}


def _upper_token(length: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_message_id() -> str:
    """A WhatsApp Web style message id (20 upper-case hex characters, ``3EB0`` prefix)."""
    return "3EB0" + secrets.token_hex(8).upper()


class FakeZapi(ProviderEmulator):
    """A fake Z-API instance; use ``async with FakeZapi() as zapi:``."""

    def __init__(
        self,
        *,
        instance_id: str = _DEFAULT_INSTANCE_ID,
        instance_token: str = _DEFAULT_INSTANCE_TOKEN,
        client_token: str | None = None,
        connected_phone: str = _DEFAULT_CONNECTED_PHONE,
        webhooks: Mapping[str, str] | None = None,
        notify_sent_by_me: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        now: Callable[[], float] = time.time,
        webhook_timeout: float = 10.0,
    ) -> None:
        """Configure the instance; nothing listens until :meth:`start`.

        ``client_token`` makes every request require ``Client-Token: <client_token>``.
        ``webhooks`` pre-sets :attr:`webhooks` (keys: ``received``,
        ``received_delivery``, ``delivery``, ``message_status``, ``disconnected``...).
        """
        super().__init__(host=host, port=port, now=now, webhook_timeout=webhook_timeout)
        self.instance_id = instance_id
        self.instance_token = instance_token
        self.client_token = client_token
        self.connected_phone = connected_phone
        self.webhooks: dict[str, str] = dict(webhooks or {})
        """Webhook URLs by kind, as set through the ``update-webhook-*`` PUTs."""
        self.notify_sent_by_me = notify_sent_by_me
        """Whether API sends come back as ``fromMe: true`` ReceivedCallbacks."""
        self.config_requests: list[RecordedSend] = []
        """Every webhook-configuration request (the PUTs), accepted or not."""

    @property
    def instance_url(self) -> str:
        """``{url}/instances/{instanceId}/token/{instanceToken}``."""
        return f"{self.url}/instances/{self.instance_id}/token/{self.instance_token}"

    @property
    def send_text_url(self) -> str:
        """The URL of ``send-text``."""
        return f"{self.instance_url}/send-text"

    # -- server ------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/instances/{instance_id}/token/{token}/{endpoint}", self._handle)
        # send-document names the file's extension in the path: send-document/pdf
        app.router.add_route("*", "/instances/{instance_id}/token/{token}/{endpoint:send-document}/{extension}",
                             self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        is_send = endpoint in _SENDS and (endpoint != "send-document") == ("extension" not in request.match_info)
        is_config = endpoint in ZAPI_WEBHOOK_KINDS or endpoint in ("update-every-webhooks", "update-notify-sent-by-me")
        raw, body, _ = await self._read(request)
        if not is_send and not is_config:
            return self._error(404, "NOT_FOUND", "Unable to find matching target resource method")
        expected_method = "POST" if is_send else "PUT"
        record = RecordedSend(endpoint, request.path, request.headers, body, raw)
        response, answer = self._answer(request, endpoint, expected_method, body, is_send)
        record.status, record.response = response.status, answer
        if is_send:
            self._record(record)
            if 200 <= response.status < 300:
                self._after_send(endpoint, body, answer)
        else:
            self.config_requests.append(record)
            self._changes.notify()
        return response

    def _answer(
        self, request: web.Request, endpoint: str, method: str, body: dict[str, Any], is_send: bool
    ) -> tuple[web.Response, Any]:
        """The response and its JSON, after Z-API's checks in order."""
        if request.method != method:
            return web.Response(status=405), None
        if request.match_info["instance_id"] != self.instance_id or request.match_info["token"] != self.instance_token:
            return self._error_answer(400, {"error": "Instance not found"})
        if self.client_token is not None:
            given = request.headers.get("Client-Token")
            if given is None:
                return self._error_answer(400, {"error": "null not allowed"})
            if given != self.client_token:
                return self._error_answer(403, {"error": f"Client-Token {given} not allowed"})
        if not request.content_type.startswith("application/json"):
            return self._error_answer(
                415, {"error": "UNSUPPORTED_MEDIA_TYPE", "message": "HTTP 415 Unsupported Media Type"}
            )
        if is_send:
            if (failure := self._take_failure()) is not None:
                return failure, None
            return self._send(endpoint, body)
        return self._configure(endpoint, body)

    def _send(self, endpoint: str, body: dict[str, Any]) -> tuple[web.Response, Any]:
        required, _ = _SENDS[endpoint]
        for name in required:
            value = body.get(name)
            if not isinstance(value, str | int) or value == "":
                return self._error_answer(400, {"error": "BAD_REQUEST", "message": f"{name} is required"})
        message_id = new_message_id()
        answer = {"zaapId": _upper_token(32), "messageId": message_id, "id": message_id}
        return self._json(200, answer), answer

    def _configure(self, endpoint: str, body: dict[str, Any]) -> tuple[web.Response, Any]:
        if endpoint == "update-notify-sent-by-me":
            self.notify_sent_by_me = bool(body.get("notifySentByMe"))
            return self._json(200, {"value": True}), {"value": True}
        value = body.get("value")
        if not isinstance(value, str):
            return self._error_answer(400, {"error": "BAD_REQUEST", "message": "value is required"})
        if endpoint == "update-every-webhooks":
            for kind in ("received", "delivery", "message_status", "disconnected", "connected", "presence"):
                self.webhooks[kind] = value
            if "notifySentByMe" in body:
                self.notify_sent_by_me = bool(body["notifySentByMe"])
        else:
            self.webhooks[ZAPI_WEBHOOK_KINDS[endpoint]] = value
        return self._json(200, {"value": True}), {"value": True}

    def _after_send(self, endpoint: str, body: dict[str, Any], answer: dict[str, Any]) -> None:
        """What Z-API does after accepting a send: delivery callback and own-message echo."""
        phone = str(body.get("phone", ""))
        if "delivery" in self.webhooks:
            payload = self.delivery_callback(phone, answer["messageId"], zaap_id=answer["zaapId"])
            self.pusher.spawn(self.emit(payload))
        if self.notify_sent_by_me and ("received_delivery" in self.webhooks or "received" in self.webhooks):
            if endpoint == "send-text":
                echo = self.text_message(
                    phone, str(body.get("message", "")), message_id=answer["messageId"], from_me=True, from_api=True
                )
            elif endpoint == "send-image":
                echo = self.image_message(
                    phone,
                    caption=str(body.get("caption", "")),
                    message_id=answer["messageId"],
                    from_me=True,
                    from_api=True,
                )
            elif endpoint == "send-document":
                echo = self.document_message(phone, file_name=str(body.get("fileName") or "file"),
                                             message_id=answer["messageId"], from_me=True, from_api=True)
            else:
                echo = self.audio_message(phone, message_id=answer["messageId"], from_me=True, from_api=True)
            self.pusher.spawn(self.emit(echo))

    def _failure_response(self, failure: InjectedFailure) -> web.Response:
        body = failure.body if failure.body is not None else {"error": _REASONS.get(failure.status, "Error")}
        return self._json(failure.status, body)

    def _error(self, status: int, error: str, message: str) -> web.Response:
        return self._json(status, {"error": error, "message": message})

    def _error_answer(self, status: int, body: dict[str, Any]) -> tuple[web.Response, Any]:
        return self._json(status, body), body

    # -- webhook payloads --------------------------------------------------------------------

    def _received(
        self,
        phone: str,
        *,
        message_id: str | None,
        name: str,
        from_me: bool,
        from_api: bool,
        group: bool | str,
        group_name: str,
        newsletter: bool | str,
        broadcast: bool,
        status_reply: bool,
        is_edit: bool,
        waiting: bool,
        moment: int | None,
        reference_message_id: str | None,
    ) -> dict[str, Any]:
        """The fields every ReceivedCallback carries (EN docs text example, plus ``fromApi``)."""
        chat = phone
        participant: str | None = None
        participant_lid: str | None = None
        chat_name = name
        if group:
            chat = group if isinstance(group, str) else "120363019502650977-group"
            if not chat.endswith("-group"):
                chat += "-group"
            participant, participant_lid, chat_name = phone, f"{_lid(phone)}@lid", group_name
        elif newsletter:
            chat = newsletter if isinstance(newsletter, str) else "120363166555745933@newsletter"
            chat_name = group_name
        payload: dict[str, Any] = {
            "isStatusReply": status_reply,
            "senderLid": f"{_lid(phone)}@lid",
            "connectedPhone": self.connected_phone,
            "waitingMessage": waiting,
            "isEdit": is_edit,
            "isGroup": bool(group),
            "isNewsletter": bool(newsletter),
            "instanceId": self.instance_id,
            "messageId": message_id or new_message_id(),
            "phone": chat,
            "fromMe": from_me,
            "momment": moment if moment is not None else int(self.now() * 1000),
            "status": "SENT" if from_me else "RECEIVED",
            "chatName": chat_name,
            "senderPhoto": _PHOTO,
            "senderName": name,
            "participantPhone": participant,
            "participantLid": participant_lid,
            "photo": _PHOTO,
            "broadcast": broadcast,
            "fromApi": from_api,
            "forwarded": False,
            "type": "ReceivedCallback",
        }
        if reference_message_id is not None:
            payload["referenceMessageId"] = reference_message_id
        return payload

    def text_message(
        self,
        phone: str,
        text: str,
        *,
        message_id: str | None = None,
        name: str = "Contact",
        from_me: bool = False,
        from_api: bool = False,
        group: bool | str = False,
        group_name: str = "Group",
        newsletter: bool | str = False,
        broadcast: bool = False,
        status_reply: bool = False,
        is_edit: bool = False,
        moment: int | None = None,
        reference_message_id: str | None = None,
    ) -> dict[str, Any]:
        """A ``ReceivedCallback`` carrying ``text.message``.

        ``phone`` is the sender. ``group`` (True or a group id like
        ``"120363019502650977-group"``) makes it a group message: ``phone``
        becomes the group id and the sender goes to ``participantPhone``.
        ``newsletter`` (True or an ``...@newsletter`` id) makes it a channel post.
        ``from_me`` is an own-message echo; ``moment`` is epoch milliseconds.
        """
        payload = self._received(
            phone,
            message_id=message_id,
            name=name,
            from_me=from_me,
            from_api=from_api,
            group=group,
            group_name=group_name,
            newsletter=newsletter,
            broadcast=broadcast,
            status_reply=status_reply,
            is_edit=is_edit,
            waiting=False,
            moment=moment,
            reference_message_id=reference_message_id,
        )
        payload["text"] = {"message": text}
        return payload

    def image_message(
        self,
        phone: str,
        *,
        image_url: str = f"{_MEDIA}/image.jpeg",
        caption: str = "",
        mime_type: str = "image/jpeg",
        width: int = 600,
        height: int = 315,
        view_once: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """A ``ReceivedCallback`` with an ``image`` object; ``options`` as for :meth:`text_message`."""
        payload = self._received(phone, **self._defaults(options))
        payload["image"] = {
            "mimeType": mime_type,
            "imageUrl": image_url,
            "thumbnailUrl": image_url,
            "caption": caption,
            "width": width,
            "height": height,
            "viewOnce": view_once,
        }
        return payload

    def audio_message(
        self,
        phone: str,
        *,
        audio_url: str = f"{_MEDIA}/audio.ogg",
        seconds: int = 10,
        ptt: bool = True,
        mime_type: str = "audio/ogg; codecs=opus",
        **options: Any,
    ) -> dict[str, Any]:
        """A ``ReceivedCallback`` with an ``audio`` object (``ptt`` = recorded voice note)."""
        payload = self._received(phone, **self._defaults(options))
        payload["audio"] = {
            "ptt": ptt,
            "seconds": seconds,
            "audioUrl": audio_url,
            "mimeType": mime_type,
            "viewOnce": False,
        }
        return payload

    def document_message(
        self,
        phone: str,
        *,
        document_url: str = f"{_MEDIA}/file.pdf",
        file_name: str = "file.pdf",
        title: str = "file",
        mime_type: str = "application/pdf",
        page_count: int = 1,
        **options: Any,
    ) -> dict[str, Any]:
        """A ``ReceivedCallback`` with a ``document`` object."""
        payload = self._received(phone, **self._defaults(options))
        payload["document"] = {
            "documentUrl": document_url,
            "mimeType": mime_type,
            "title": title,
            "pageCount": page_count,
            "fileName": file_name,
        }
        return payload

    def waiting_message(self, phone: str, **options: Any) -> dict[str, Any]:
        """A ``waitingMessage: true`` placeholder ("waiting for this message"), with no content."""
        fields = self._defaults(options)
        fields["waiting"] = True
        return self._received(phone, **fields)

    def delivery_callback(
        self, phone: str, message_id: str, *, zaap_id: str | None = None, error: str | None = None
    ) -> dict[str, Any]:
        """A ``DeliveryCallback`` (the message left Z-API); ``error`` e.g. "Phone number does not exist"."""
        payload: dict[str, Any] = {
            "phone": phone,
            "zaapId": zaap_id or _upper_token(32),
            "messageId": message_id,
            "type": "DeliveryCallback",
            "instanceId": self.instance_id,
        }
        if error is not None:
            payload["error"] = error
        return payload

    def status_callback(
        self, phone: str, ids: list[str] | str, status: str = "READ", *, moment: int | None = None
    ) -> dict[str, Any]:
        """A ``MessageStatusCallback``; ``status`` in SENT, RECEIVED, READ, READ_BY_ME, PLAYED."""
        return {
            "status": status,
            "ids": [ids] if isinstance(ids, str) else list(ids),
            "momment": moment if moment is not None else int(self.now() * 1000),
            "phoneDevice": 0,
            "phone": phone,
            "type": "MessageStatusCallback",
            "instanceId": self.instance_id,
        }

    @staticmethod
    def _defaults(options: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "message_id": None,
            "name": "Contact",
            "from_me": False,
            "from_api": False,
            "group": False,
            "group_name": "Group",
            "newsletter": False,
            "broadcast": False,
            "status_reply": False,
            "is_edit": False,
            "waiting": False,
            "moment": None,
            "reference_message_id": None,
        }
        unknown = set(options) - set(fields)
        if unknown:
            raise TypeError(f"unexpected options: {sorted(unknown)}")
        fields.update(options)
        return fields

    # -- delivery ----------------------------------------------------------------------------

    async def push(self, url: str, payload: Payload, *, headers: Mapping[str, str] | None = None) -> int:
        """POST one callback to ``url`` as Z-API does (JSON, no signature); the receiver's status."""
        sent_headers = {"Content-Type": JSON, **(headers or {})}
        return await self.pusher.post(url, encode_payload(payload), sent_headers)

    def webhook_for(self, payload: Mapping[str, Any]) -> str | None:
        """The configured URL Z-API would POST ``payload`` to, by its ``type``."""
        kind = payload.get("type")
        if kind == "ReceivedCallback":
            if payload.get("fromMe") and not self.notify_sent_by_me:
                return None
            # "received-delivery" takes priority while notify-sent-by-me is on.
            if self.notify_sent_by_me and "received_delivery" in self.webhooks:
                return self.webhooks["received_delivery"]
            return self.webhooks.get("received")
        if kind == "DeliveryCallback":
            return self.webhooks.get("delivery")
        if kind == "MessageStatusCallback":
            return self.webhooks.get("message_status")
        return None

    async def emit(self, payload: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> int | None:
        """POST ``payload`` to the webhook configured for its type (one attempt); None if none is."""
        url = self.webhook_for(payload)
        if url is None:
            return None
        try:
            return await self.push(url, payload, headers=headers)
        except (aiohttp.ClientError, TimeoutError):  # recorded in deliveries; no retry is documented
            return None


def _lid(phone: str) -> str:
    """A stable fake WhatsApp LID for ``phone`` (same digits count, different number)."""
    digits = "".join(ch for ch in phone if ch.isdigit()) or "0"
    return str(int(digits) * 7 % 10**14 + 10**13)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: serve a fake Z-API instance until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.zapi", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--instance-id", default=_DEFAULT_INSTANCE_ID)
    parser.add_argument("--instance-token", default=_DEFAULT_INSTANCE_TOKEN)
    parser.add_argument("--client-token", default=None, help="require this Client-Token header")
    args = parser.parse_args(argv)
    fake = FakeZapi(instance_id=args.instance_id, instance_token=args.instance_token,
                    client_token=args.client_token, host=args.host, port=args.port)
    serve_forever(fake, lambda _: f"fake Z-API listening on {fake.instance_url}")


if __name__ == "__main__":
    main()
