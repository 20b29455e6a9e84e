"""The fake Z-API, driven through plain aiohttp clients and a small webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.emulators.webhook_pusher import WebhookReceiver
from tests.emulators.zapi import FakeZapi

CLIENT_TOKEN = "F0f70a10da4b747c2836a33992d5531a2S"
PHONE = "5511999999999"
NO_INSTANCE = {"error": "Instance not found"}
NOT_FOUND = {"error": "NOT_FOUND", "message": "Unable to find matching target resource method"}

RECEIVED_FIELDS = {
    "isStatusReply", "senderLid", "connectedPhone", "waitingMessage", "isEdit", "isGroup", "isNewsletter",
    "instanceId", "messageId", "phone", "fromMe", "momment", "status", "chatName", "senderPhoto", "senderName",
    "participantPhone", "participantLid", "photo", "broadcast", "type", "fromApi", "forwarded",
}


@pytest.fixture
async def zapi() -> AsyncIterator[FakeZapi]:
    async with FakeZapi(client_token=CLIENT_TOKEN, now=lambda: 1_632_228_638.0) as fake:
        yield fake


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.request(method, url, json=body, headers=headers) as response:
        text = await response.text()
        return response.status, orjson.loads(text) if text else None, response


async def send(http: aiohttp.ClientSession, zapi: FakeZapi, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    status, answer, _ = await call(http, "POST", zapi.send_text_url, body, {"Client-Token": CLIENT_TOKEN, **headers})
    return status, answer


async def test_send_text_answers_and_records(zapi: FakeZapi, http: aiohttp.ClientSession) -> None:
    body = {"phone": PHONE, "message": "Welcome to *Z-API*", "delayMessage": 2, "delayTyping": 3}
    status, answer = await send(http, zapi, body)
    assert status == 200
    assert set(answer) == {"zaapId", "messageId", "id"}
    assert len(answer["zaapId"]) == 32 and answer["zaapId"].isalnum()
    assert answer["id"] == answer["messageId"] and len(answer["messageId"]) == 20
    [recorded] = zapi.sent
    assert recorded.endpoint == "send-text"
    assert recorded.path == f"/instances/{zapi.instance_id}/token/{zapi.instance_token}/send-text"
    assert recorded.body == body
    assert recorded.headers["Client-Token"] == CLIENT_TOKEN
    assert recorded.response == answer and recorded.status == 200


@pytest.mark.parametrize(
    ("headers", "path", "status", "error"),
    [
        ({}, None, 400, {"error": "null not allowed"}),
        ({"Client-Token": "wrong"}, None, 403, {"error": "Client-Token wrong not allowed"}),
        ({"Client-Token": CLIENT_TOKEN}, "/instances/NOPE/token/{token}/send-text", 400, NO_INSTANCE),
        ({"Client-Token": CLIENT_TOKEN}, "/instances/{id}/token/NOPE/send-text", 400, NO_INSTANCE),
    ],
)
async def test_auth_failures(
    zapi: FakeZapi, http: aiohttp.ClientSession, headers: dict[str, str], path: str | None, status: int,
    error: dict[str, str],
) -> None:
    url = zapi.send_text_url if path is None else zapi.url + path.format(id=zapi.instance_id, token=zapi.instance_token)
    got_status, answer, _ = await call(http, "POST", url, {"phone": PHONE, "message": "hi"}, headers)
    assert (got_status, answer) == (status, error)
    assert zapi.sent == [] and len(zapi.requests) == 1 and zapi.requests[0].status == status


async def test_client_token_optional_when_not_configured(http: aiohttp.ClientSession) -> None:
    async with FakeZapi() as zapi:
        status, answer, _ = await call(http, "POST", zapi.send_text_url, {"phone": PHONE, "message": "hi"})
    assert status == 200 and "zaapId" in answer


async def test_protocol_errors(zapi: FakeZapi, http: aiohttp.ClientSession) -> None:
    headers = {"Client-Token": CLIENT_TOKEN}
    status, answer, _ = await call(http, "POST", f"{zapi.instance_url}/send-nothing", {}, headers)
    assert (status, answer) == (404, NOT_FOUND)
    status, _, _ = await call(http, "GET", zapi.send_text_url, None, headers)
    assert status == 405
    async with http.post(zapi.send_text_url, data=b"phone=1", headers={**headers, "Content-Type": "text/plain"}) as r:
        assert r.status == 415
    status, answer = await send(http, zapi, {"phone": PHONE})
    assert (status, answer) == (400, {"error": "BAD_REQUEST", "message": "message is required"})
    status, _ = await send(http, zapi, {"phone": PHONE, "message": "ok"})
    assert status == 200 and len(zapi.sent) == 1


async def test_image_and_audio_sends(zapi: FakeZapi, http: aiohttp.ClientSession) -> None:
    headers = {"Client-Token": CLIENT_TOKEN}
    status, _, _ = await call(http, "POST", f"{zapi.instance_url}/send-image",
                              {"phone": PHONE, "image": "https://x/y.png", "caption": "c"}, headers)
    assert status == 200
    status, _, _ = await call(http, "POST", f"{zapi.instance_url}/send-audio", {"phone": PHONE}, headers)
    assert status == 400
    assert [s.endpoint for s in zapi.sent] == ["send-image"]


async def test_failure_injection(zapi: FakeZapi, http: aiohttp.ClientSession) -> None:
    zapi.fail_next(429, retry_after=2, count=2)
    zapi.fail_next(500)
    body = {"phone": PHONE, "message": "hi"}
    for expected in (429, 429):
        status, answer, response = await call(http, "POST", zapi.send_text_url, body, {"Client-Token": CLIENT_TOKEN})
        assert (status, answer) == (expected, {"error": "Too Many Requests"})
        assert response.headers["Retry-After"] == "2"
    status, answer, response = await call(http, "POST", zapi.send_text_url, body, {"Client-Token": CLIENT_TOKEN})
    assert (status, answer) == (500, {"error": "Internal Server Error"}) and "Retry-After" not in response.headers
    assert (await send(http, zapi, body))[0] == 200
    assert [r.status for r in zapi.requests] == [429, 429, 500, 200] and len(zapi.sent) == 1


async def test_auth_is_checked_before_injected_failures(zapi: FakeZapi, http: aiohttp.ClientSession) -> None:
    zapi.fail_next(500)
    status, _, _ = await call(http, "POST", zapi.send_text_url, {"phone": PHONE, "message": "hi"})
    assert status == 400
    assert (await send(http, zapi, {"phone": PHONE, "message": "hi"}))[0] == 500


async def test_wait_for_sends(zapi: FakeZapi, http: aiohttp.ClientSession) -> None:
    async def later() -> None:
        await asyncio.sleep(0.01)
        for i in range(2):
            await send(http, zapi, {"phone": PHONE, "message": str(i)})

    task = asyncio.create_task(later())
    sent = await zapi.wait_for_sends(2, timeout=2)
    assert [s.body["message"] for s in sent] == ["0", "1"]
    await task
    with pytest.raises(TimeoutError):
        await zapi.wait_for_sends(3, timeout=0.05)


def test_text_message_payload(zapi: FakeZapi) -> None:
    payload = zapi.text_message(PHONE, "test", name="Ana", message_id="ABC")
    assert set(payload) == RECEIVED_FIELDS | {"text"}
    assert payload["type"] == "ReceivedCallback"
    assert payload["text"] == {"message": "test"}
    assert (payload["phone"], payload["messageId"]) == (PHONE, "ABC")
    assert payload["senderName"] == payload["chatName"] == "Ana"
    assert payload["fromMe"] is False and payload["isGroup"] is False and payload["isNewsletter"] is False
    assert payload["momment"] == 1_632_228_638_000 and payload["status"] == "RECEIVED"
    assert payload["participantPhone"] is None and payload["instanceId"] == zapi.instance_id
    assert payload["connectedPhone"] == zapi.connected_phone and payload["senderLid"].endswith("@lid")


def test_variant_payloads(zapi: FakeZapi) -> None:
    group = zapi.text_message(PHONE, "hi all", group=True, group_name="Team")
    assert group["isGroup"] is True and group["phone"].endswith("-group")
    assert (group["participantPhone"], group["chatName"]) == (PHONE, "Team")
    assert zapi.text_message(PHONE, "x", group="120363000000000001")["phone"] == "120363000000000001-group"
    own = zapi.text_message(PHONE, "mine", from_me=True)
    assert own["fromMe"] is True and own["status"] == "SENT"
    news = zapi.text_message(PHONE, "post", newsletter=True)
    assert news["isNewsletter"] is True and news["phone"].endswith("@newsletter")
    assert zapi.text_message(PHONE, "x", broadcast=True, status_reply=True)["broadcast"] is True
    image = zapi.image_message(PHONE, caption="look", image_url="https://x/i.jpg")
    assert image["image"] == {"mimeType": "image/jpeg", "imageUrl": "https://x/i.jpg", "thumbnailUrl": "https://x/i.jpg",
                              "caption": "look", "width": 600, "height": 315, "viewOnce": False}
    assert "text" not in image
    audio = zapi.audio_message(PHONE, seconds=7)
    assert audio["audio"]["ptt"] is True and audio["audio"]["seconds"] == 7
    assert audio["audio"]["mimeType"] == "audio/ogg; codecs=opus"
    document = zapi.document_message(PHONE, file_name="nome.pdf")
    assert set(document["document"]) == {"documentUrl", "mimeType", "title", "pageCount", "fileName"}
    assert zapi.waiting_message(PHONE)["waitingMessage"] is True
    with pytest.raises(TypeError):
        zapi.image_message(PHONE, nonsense=True)


def test_callback_payloads(zapi: FakeZapi) -> None:
    delivery = zapi.delivery_callback(PHONE, "MID", zaap_id="ZID")
    assert delivery == {"phone": PHONE, "zaapId": "ZID", "messageId": "MID", "type": "DeliveryCallback",
                        "instanceId": zapi.instance_id}
    failed = zapi.delivery_callback(PHONE, "MID", error="Phone number does not exist")
    assert failed["error"] == "Phone number does not exist"
    status = zapi.status_callback(PHONE, "MID", "READ")
    assert status == {"status": "READ", "ids": ["MID"], "momment": 1_632_228_638_000, "phoneDevice": 0,
                      "phone": PHONE, "type": "MessageStatusCallback", "instanceId": zapi.instance_id}


async def test_push_delivers_exact_bytes_and_duplicates(zapi: FakeZapi, hook: WebhookReceiver) -> None:
    payload = zapi.text_message(PHONE, "olá", message_id="DUP")
    assert await zapi.push(f"{hook.url}/zapi/abc", payload) == 200
    hook.script(500)
    assert await zapi.push_many(f"{hook.url}/zapi/abc", [payload], headers={"X-Extra": "1"}) == [500]
    first, second = hook.received
    assert first.path == "/zapi/abc" and first.headers["Content-Type"] == "application/json"
    assert first.body == second.body == orjson.dumps(payload)
    assert first.json()["messageId"] == second.json()["messageId"] == "DUP"
    assert second.headers["X-Extra"] == "1"
    assert [d.status for d in zapi.deliveries] == [200, 500]
    raw = b'{"type":"ReceivedCallback","messageId":"RAW"}'
    await zapi.push(hook.url, raw)
    assert hook.received[-1].body == raw


async def test_webhook_configuration_and_automatic_callbacks(
    zapi: FakeZapi, http: aiohttp.ClientSession, hook: WebhookReceiver
) -> None:
    headers = {"Client-Token": CLIENT_TOKEN}
    for endpoint, path in (("update-webhook-received", "/received"), ("update-webhook-delivery", "/delivery")):
        url = f"{zapi.instance_url}/{endpoint}"
        status, answer, _ = await call(http, "PUT", url, {"value": hook.url + path}, headers)
        assert (status, answer) == (200, {"value": True})
    assert zapi.webhooks == {"received": hook.url + "/received", "delivery": hook.url + "/delivery"}
    status, _, _ = await call(http, "PUT", f"{zapi.instance_url}/update-webhook-received", {"value": "x"})
    assert status == 400 and zapi.webhooks["received"] == hook.url + "/received"

    _, answer = await send(http, zapi, {"phone": PHONE, "message": "hello"})
    [delivery] = await hook.wait_for(1)
    assert delivery.path == "/delivery"
    assert delivery.json() == {"phone": PHONE, "zaapId": answer["zaapId"], "messageId": answer["messageId"],
                               "type": "DeliveryCallback", "instanceId": zapi.instance_id}

    status, answer, _ = await call(http, "PUT", f"{zapi.instance_url}/update-notify-sent-by-me",
                                   {"notifySentByMe": True}, headers)
    assert (status, answer) == (200, {"value": True}) and zapi.notify_sent_by_me
    _, answer = await send(http, zapi, {"phone": PHONE, "message": "echo me"})
    await hook.wait_for(3)
    echo = next(r.json() for r in hook.received if r.path == "/received")
    assert echo["fromMe"] is True and echo["fromApi"] is True
    assert echo["messageId"] == answer["messageId"] and echo["text"] == {"message": "echo me"}
    assert len(zapi.config_requests) == 4


async def test_emit_routes_by_type(zapi: FakeZapi, hook: WebhookReceiver) -> None:
    zapi.webhooks.update(received=hook.url + "/r", message_status=hook.url + "/s")
    assert await zapi.emit(zapi.text_message(PHONE, "hi")) == 200
    assert await zapi.emit(zapi.status_callback(PHONE, ["A"], "READ")) == 200
    assert await zapi.emit(zapi.delivery_callback(PHONE, "A")) is None  # no delivery webhook
    assert await zapi.emit(zapi.text_message(PHONE, "own", from_me=True)) is None  # notify-sent-by-me off
    zapi.webhooks["received_delivery"] = hook.url + "/rd"
    zapi.notify_sent_by_me = True
    assert await zapi.emit(zapi.text_message(PHONE, "own", from_me=True)) == 200
    assert [r.path for r in hook.received] == ["/r", "/s", "/rd"]
    zapi.webhooks["received"] = "http://127.0.0.1:1/unreachable"
    zapi.notify_sent_by_me = False
    assert await zapi.emit(zapi.text_message(PHONE, "lost")) is None
    assert zapi.deliveries[-1].status is None and zapi.deliveries[-1].error
