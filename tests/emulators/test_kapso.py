"""The fake Kapso, driven through plain aiohttp clients and a small webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.emulators.kapso import FakeKapso, kapso_signature
from tests.emulators.webhook_pusher import WebhookReceiver

API_KEY = "kapso-key"
SECRET = "wh_sec_3kfj9dmfkg8s2"
NUMBER_ID = "106540352242922"
PHONE = "5511999999999"
HOUR = 3600.0
T0 = 1_730_092_800.0
NAMELESS = {"language": {"code": "pt_BR"}}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def kapso(clock: Clock) -> AsyncIterator[FakeKapso]:
    async with FakeKapso(api_key=API_KEY, phone_number_id=NUMBER_ID, webhook_secret=SECRET, now=clock,
                         retry_scale=0.0001) as fake:
        yield fake


def text(to: str = PHONE, body: str = "Olá da Kapso!") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"preview_url": False, "body": body}}


def template(to: str = PHONE) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": "lembrete_consulta", "language": {"code": "pt_BR"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}}


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    sent = {"X-API-Key": API_KEY} if headers is None else headers
    async with http.post(url, json=body, headers=sent) as response:
        return response.status, orjson.loads(await response.read()), response


def meta_code(answer: Any) -> int:
    error = answer["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(error)
    return int(error["code"])


async def test_send_text_answers_meta_body(kapso: FakeKapso, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(http, kapso.messages_url(), text("+5511999999999"))
    assert status == 200
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "+5511999999999", "wa_id": PHONE}]
    [message] = answer["messages"]
    assert set(message) == {"id"} and message["id"].startswith("wamid.")
    [recorded] = kapso.sent
    assert recorded.endpoint == "messages" and recorded.path == f"/meta/whatsapp/v24.0/{NUMBER_ID}/messages"
    assert recorded.body == text("+5511999999999") and recorded.headers["X-API-Key"] == API_KEY
    assert recorded.response == answer


async def test_template_send(kapso: FakeKapso, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(http, kapso.messages_url(), template())
    assert status == 200 and answer["messages"][0]["message_status"] == "accepted"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}])
async def test_auth_rejections(kapso: FakeKapso, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
    status, answer, _ = await post(http, kapso.messages_url(), text(), headers)
    assert (status, answer) == (401, {"error": "Invalid API key"})
    assert kapso.sent == [] and len(kapso.requests) == 1


async def test_bearer_and_unversioned_path(kapso: FakeKapso, http: aiohttp.ClientSession) -> None:
    status, _, _ = await post(http, kapso.messages_url("v23.0"), text(), {"Authorization": f"Bearer {API_KEY}"})
    assert status == 200
    status, _, _ = await post(http, f"{kapso.url}/meta/whatsapp/{NUMBER_ID}/messages", text())
    assert status == 200
    assert len(kapso.sent) == 2


async def test_graph_errors(kapso: FakeKapso, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(http, f"{kapso.url}/meta/whatsapp/v24.0/999/messages", text())
    assert status == 400 and meta_code(answer) == 100 and answer["error"]["error_subcode"] == 33
    cases = [
        ({**text(), "messaging_product": None}, "(#100) The parameter messaging_product is required."),
        ({**text(), "to": ""}, "(#100) The parameter to is required."),
        ({**text(), "text": {}}, "(#100) The parameter text['body'] is required."),
        ({**template(), "template": NAMELESS}, "(#100) The parameter template['name'] is required."),
    ]
    for body, message in cases:
        status, answer, _ = await post(http, kapso.messages_url(), body)
        assert (status, meta_code(answer), answer["error"]["message"]) == (400, 100, message)
    status, answer, _ = await post(http, kapso.messages_url(), text(body="x" * 4097))
    assert status == 400 and "4096" in answer["error"]["error_data"]["details"]
    assert (await post(http, kapso.messages_url(), text(body="x" * 4096)))[0] == 200
    status, answer, _ = await post(http, f"{kapso.url}/meta/whatsapp/v24.0/{NUMBER_ID}/nothing", {})
    assert status == 400 and meta_code(answer) == 2500
    assert len(kapso.sent) == 1


async def test_mark_read_with_typing(kapso: FakeKapso, http: aiohttp.ClientSession) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X",
            "typing_indicator": {"type": "text"}}
    status, answer, _ = await post(http, kapso.messages_url(), body)
    assert (status, answer) == (200, {"success": True})
    assert kapso.sent == [] and [r.body for r in kapso.read_receipts] == [body]


async def test_failure_injection(kapso: FakeKapso, http: aiohttp.ClientSession) -> None:
    kapso.fail_next(429, retry_after=3)
    kapso.fail_next(500)
    kapso.fail_next(409)
    status, answer, response = await post(http, kapso.messages_url(), text())
    assert (status, meta_code(answer), response.headers["Retry-After"]) == (429, 130429, "3")
    status, answer, response = await post(http, kapso.messages_url(), text())
    assert (status, meta_code(answer)) == (500, 1) and "Retry-After" not in response.headers
    status, answer, _ = await post(http, kapso.messages_url(), text())
    assert (status, answer) == (409, {"error": "Another message in-flight for this conversation. Retry shortly."})
    assert (await post(http, kapso.messages_url(), text()))[0] == 200
    assert [r.status for r in kapso.requests] == [429, 500, 409, 200] and len(kapso.sent) == 1


async def test_24_hour_window_rejects_text_but_not_templates(
    kapso: FakeKapso, http: aiohttp.ClientSession, clock: Clock
) -> None:
    kapso.window = "reject"
    status, answer, _ = await post(http, kapso.messages_url(), text())
    assert status == 400 and meta_code(answer) == 131047
    assert answer["error"]["message"] == "(#131047) Re-engagement message"
    assert "24 hours" in answer["error"]["error_data"]["details"]
    assert (await post(http, kapso.messages_url(), template()))[0] == 200

    kapso.text_message(PHONE, "oi")  # the contact writes: the window opens
    assert kapso.window_open(PHONE)
    assert (await post(http, kapso.messages_url(), text("+" + PHONE)))[0] == 200
    clock.now += 23.9 * HOUR
    assert (await post(http, kapso.messages_url(), text()))[0] == 200  # our own sends do not extend it
    clock.now += 0.2 * HOUR
    status, answer, _ = await post(http, kapso.messages_url(), text())
    assert status == 400 and meta_code(answer) == 131047
    assert (await post(http, kapso.messages_url(), template()))[0] == 200
    kapso.note_inbound(PHONE, at=clock.now - HOUR)
    assert (await post(http, kapso.messages_url(), text()))[0] == 200
    assert [s.body["type"] for s in kapso.sent] == ["template", "text", "text", "template", "text"]


async def test_24_hour_window_reported_by_webhook(
    kapso: FakeKapso, http: aiohttp.ClientSession, hook: WebhookReceiver
) -> None:
    kapso.window, kapso.webhook_url = "webhook", hook.url + "/kapso"
    status, answer, _ = await post(http, kapso.messages_url(), text())
    assert status == 200
    [received] = await hook.wait_for(1)
    assert received.headers["X-Webhook-Event"] == "whatsapp.message.failed"
    message = received.json()["message"]
    assert message["id"] == answer["messages"][0]["id"]
    assert message["kapso"]["direction"] == "outbound" and message["kapso"]["status"] == "failed"
    assert message["kapso"]["statuses"][-1]["errors"][0]["code"] == 131047


def test_received_payload(kapso: FakeKapso, clock: Clock) -> None:
    payload = kapso.text_message(PHONE, "Hello", name="Ana", message_id="wamid.123")
    assert set(payload) == {"message", "conversation", "is_new_conversation", "phone_number_id"}
    assert payload["phone_number_id"] == NUMBER_ID and payload["is_new_conversation"] is True
    message = payload["message"]
    assert (message["id"], message["from"], message["timestamp"], message["type"]) == (
        "wamid.123", PHONE, str(int(T0)), "text")
    assert message["text"] == {"body": "Hello"}
    assert message["kapso"] == {"direction": "inbound", "status": "received", "processing_status": "pending",
                                "origin": "cloud_api", "has_media": False, "content": "Hello"}
    conversation = payload["conversation"]
    assert conversation["phone_number"] == "+" + PHONE and conversation["phone_number_id"] == NUMBER_ID
    assert conversation["status"] == "active" and conversation["last_active_at"] == "2024-10-28T05:20:00Z"
    assert conversation["kapso"] == {
        "contact_name": "Ana", "messages_count": 1, "last_message_id": "wamid.123", "last_message_type": "text",
        "last_message_timestamp": "2024-10-28T05:20:00Z", "last_message_text": "Hello",
        "last_inbound_at": "2024-10-28T05:20:00Z", "last_outbound_at": None,
    }
    second = kapso.text_message(PHONE, "again")
    assert second["is_new_conversation"] is False and second["conversation"]["id"] == conversation["id"]
    assert second["conversation"]["kapso"]["messages_count"] == 2
    assert kapso.text_message(PHONE, "g", group_id="120363000000000001")["message"]["group_id"] == "120363000000000001"
    assert kapso.text_message(PHONE, "g", group=True)["message"]["group_id"]
    own = kapso.text_message(PHONE, "mine", from_me=True)
    assert own["message"]["kapso"]["direction"] == "outbound" and FakeKapso.event_of(own) == "whatsapp.message.sent"


def test_media_outbound_status_and_batch_payloads(kapso: FakeKapso) -> None:
    image = kapso.image_message(PHONE, caption="Photo description")["message"]
    assert image["type"] == "image" and image["image"]["caption"] == "Photo description"
    assert image["kapso"]["has_media"] is True and image["kapso"]["media_data"]["content_type"] == "image/jpeg"
    assert image["kapso"]["media_url"] == image["kapso"]["media_data"]["url"]
    audio = kapso.audio_message(PHONE, transcript="I need help")["message"]["kapso"]
    assert audio["transcript"] == {"text": "I need help"} and audio["content"].endswith("Transcript: I need help")

    echo = kapso.echo_message(PHONE, "typed in the app")
    assert echo["message"]["kapso"]["direction"] == "outbound"
    assert echo["message"]["kapso"]["origin"] == "business_app" and echo["message"]["to"] == PHONE
    assert FakeKapso.event_of(echo) == "whatsapp.message.sent"
    read = kapso.status_event("wamid.456", PHONE, "read", text="On my way")
    assert [s["status"] for s in read["message"]["kapso"]["statuses"]] == ["sent", "delivered", "read"]
    assert "kapso" not in read["conversation"] and FakeKapso.event_of(read) == "whatsapp.message.read"
    delivered = kapso.status_event("wamid.456", PHONE)
    assert FakeKapso.event_of(delivered) == "whatsapp.message.delivered"
    failed = kapso.status_event("wamid.789", PHONE, "failed")
    assert failed["message"]["kapso"]["statuses"][-1]["errors"][0]["title"] == "Re-engagement message"

    batch = kapso.batch([kapso.text_message(PHONE, "a"), kapso.text_message(PHONE, "b")])
    assert batch["type"] == "whatsapp.message.received" and batch["batch"] is True
    assert [item["message"]["text"]["body"] for item in batch["data"]] == ["a", "b"]
    assert FakeKapso.event_of(batch) == "whatsapp.message.received"


async def test_push_signs_exact_bytes(kapso: FakeKapso, hook: WebhookReceiver) -> None:
    payload = kapso.text_message(PHONE, "Olá, ação!", message_id="wamid.DUP")
    assert await kapso.push_many(f"{hook.url}/hooks/kapso", [payload, payload]) == [200, 200]
    first, second = hook.received
    assert first.path == "/hooks/kapso" and first.body == second.body == orjson.dumps(payload)
    expected = hmac.new(SECRET.encode(), first.body, hashlib.sha256).hexdigest()
    assert first.headers["X-Webhook-Signature"] == expected == kapso_signature(SECRET, first.body)
    assert first.headers["X-Webhook-Event"] == "whatsapp.message.received"
    assert first.headers["X-Webhook-Payload-Version"] == "v2"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Idempotency-Key"] == second.headers["X-Idempotency-Key"]
    assert "X-Webhook-Batch" not in first.headers

    await kapso.push(hook.url, payload, bad_signature=True)
    bad = hook.received[-1].headers["X-Webhook-Signature"]
    assert len(bad) == 64 and not hmac.compare_digest(bad, expected)
    await kapso.push(hook.url, payload, sign=False)
    assert "X-Webhook-Signature" not in hook.received[-1].headers
    await kapso.push(hook.url, payload, secret="other", event="whatsapp.message.sent", idempotency_key="k1",
                     headers={"X-Extra": "1"})
    last = hook.received[-1].headers
    assert last["X-Webhook-Signature"] == kapso_signature("other", payload_bytes := orjson.dumps(payload))
    assert (last["X-Webhook-Event"], last["X-Idempotency-Key"], last["X-Extra"]) == ("whatsapp.message.sent", "k1", "1")
    raw = b'{"message": {"kapso": {"direction": "inbound"}}}'
    await kapso.push(hook.url, raw)
    assert hook.received[-1].body == raw and hook.received[-1].headers["X-Webhook-Signature"] == kapso_signature(
        SECRET, raw)
    assert payload_bytes == first.body


async def test_push_batch_headers(kapso: FakeKapso, hook: WebhookReceiver) -> None:
    batch = kapso.batch([kapso.text_message(PHONE, "a"), kapso.text_message(PHONE, "b")])
    await kapso.push(hook.url, batch)
    headers = hook.received[0].headers
    assert (headers["X-Webhook-Batch"], headers["X-Batch-Size"]) == ("true", "2")
    assert headers["X-Webhook-Event"] == "whatsapp.message.received"


async def test_no_secret_means_no_signature(hook: WebhookReceiver) -> None:
    async with FakeKapso() as kapso:
        await kapso.push(hook.url, kapso.text_message(PHONE, "hi"))
    assert "X-Webhook-Signature" not in hook.received[0].headers


async def test_emit_retries_and_filters_events(kapso: FakeKapso, hook: WebhookReceiver) -> None:
    payload = kapso.text_message(PHONE, "hi")
    assert await kapso.emit(payload) is None  # no webhook configured
    kapso.webhook_url = hook.url + "/k"
    hook.script(500, 502, 200)
    assert await kapso.emit(payload) == 200
    assert [(d.attempt, d.status) for d in kapso.deliveries] == [(1, 500), (2, 502), (3, 200)]
    assert len({d.headers["X-Idempotency-Key"] for d in kapso.deliveries}) == 1
    hook.script(500, 500, 500, 500)
    assert await kapso.emit(payload) == 500
    assert len(kapso.deliveries) == 7  # first try + 3 retries
    kapso.events = {"whatsapp.message.received"}
    assert await kapso.emit(kapso.status_event("wamid.1", PHONE)) is None


async def test_api_sends_fire_message_sent(
    kapso: FakeKapso, http: aiohttp.ClientSession, hook: WebhookReceiver
) -> None:
    kapso.webhook_url = hook.url
    _, answer, _ = await post(http, kapso.messages_url(), text())
    [received] = await hook.wait_for(1)
    assert received.headers["X-Webhook-Event"] == "whatsapp.message.sent"
    assert received.headers["X-Webhook-Signature"] == kapso_signature(SECRET, received.body)
    message = received.json()["message"]
    assert message["id"] == answer["messages"][0]["id"] and message["text"] == {"body": "Olá da Kapso!"}
    assert message["kapso"]["direction"] == "outbound" and message["kapso"]["origin"] == "cloud_api"
