"""The fake Evolution API v2, driven through plain aiohttp clients and a small webhook receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.emulators.evolution import EVOLUTION_EVENTS, FakeEvolution
from tests.emulators.webhook_pusher import WebhookReceiver

GLOBAL_KEY = "global-key"
TOKEN = "INSTANCE-TOKEN"
INSTANCE = "minha-instancia"
PHONE = "5511999999999"
NOW = 1_730_000_000.0
UNAUTHORIZED = {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
ENVELOPE_FIELDS = {"event", "instance", "data", "destination", "date_time", "sender", "server_url", "apikey"}


@pytest.fixture
async def evo() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(api_key=GLOBAL_KEY, instance=INSTANCE, instance_token=TOKEN, now=lambda: NOW,
                             unknown_numbers=["5511000000000"], retry_scale=0.0001) as fake:
        yield fake


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, key: str | None = GLOBAL_KEY
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {} if key is None else {"apikey": key}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, orjson.loads(await response.read()), response


def send_url(evo: FakeEvolution, instance: str = INSTANCE) -> str:
    return f"{evo.url}/message/sendText/{instance}"


async def set_webhook(http: aiohttp.ClientSession, evo: FakeEvolution, **webhook: Any) -> tuple[int, Any]:
    status, answer, _ = await call(http, "POST", f"{evo.url}/webhook/set/{INSTANCE}", {"webhook": webhook})
    return status, answer


@pytest.mark.parametrize("key", [GLOBAL_KEY, TOKEN])
async def test_send_text_answers_message_raw(evo: FakeEvolution, http: aiohttp.ClientSession, key: str) -> None:
    body = {"number": PHONE, "text": "Olá!", "delay": 1200, "linkPreview": False}
    status, answer, _ = await call(http, "POST", send_url(evo), body, key)
    assert status == 201
    assert answer["key"]["remoteJid"] == f"{PHONE}@s.whatsapp.net"
    assert answer["key"]["fromMe"] is True and answer["key"]["id"].startswith("3EB0")
    assert len(answer["key"]["id"]) == 22
    assert answer["message"] == {"conversation": "Olá!"}
    assert (answer["status"], answer["messageType"], answer["source"]) == ("PENDING", "conversation", "web")
    assert answer["messageTimestamp"] == int(NOW) and answer["instanceId"] == evo.default.instance_id
    assert answer["pushName"] == "Você"
    [recorded] = evo.sent
    assert (recorded.endpoint, recorded.body, recorded.headers["apikey"]) == ("sendText", body, key)
    assert recorded.status == 201 and recorded.response == answer


@pytest.mark.parametrize("key", [None, "wrong", ""])
async def test_send_text_rejects_bad_keys(evo: FakeEvolution, http: aiohttp.ClientSession, key: str | None) -> None:
    status, answer, _ = await call(http, "POST", send_url(evo), {"number": PHONE, "text": "x"}, key)
    assert (status, answer) == (401, UNAUTHORIZED)
    assert evo.sent == [] and evo.requests[0].status == 401


async def test_instance_token_only_opens_its_own_instance(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    other = evo.add_instance("other", "OTHER-TOKEN")
    status, _, _ = await call(http, "POST", send_url(evo, "other"), {"number": PHONE, "text": "x"}, TOKEN)
    assert status == 401
    status, answer, _ = await call(http, "POST", send_url(evo, "other"), {"number": PHONE, "text": "x"}, "OTHER-TOKEN")
    assert status == 201 and answer["instanceId"] == other.instance_id


async def test_unknown_instance_and_route(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await call(http, "POST", send_url(evo, "ghost"), {"number": PHONE, "text": "x"})
    assert (status, answer) == (404, {"status": 404, "error": "Not Found",
                                      "response": {"message": ['The "ghost" instance does not exist']}})
    status, answer, _ = await call(http, "POST", f"{evo.url}/message/sendNothing/{INSTANCE}", {})
    assert (status, answer) == (404, {"status": 404, "error": "Not Found",
                                      "response": {"message": [f"Cannot POST /message/sendNothing/{INSTANCE}"]}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"number": PHONE}, ['instance requires property "text"']),
        ({"text": "x"}, ['instance requires property "number"']),
        ({"number": PHONE, "text": ""}, ["Text is required"]),
        ({"number": PHONE, "text": "   "}, ["Text is required"]),
        ({"number": PHONE, "text": 5}, ["text is not of a type(s) string"]),
        ({"number": 5511, "text": "x"}, ["Invalid format"]),
        ({"number": PHONE, "text": "x", "delay": "1s"}, ["Enter a value in milliseconds"]),
        ({"number": "5511000000000", "text": "x"},
         [{"exists": False, "jid": "5511000000000@s.whatsapp.net", "number": "5511000000000"}]),
    ],
)
async def test_send_text_validation(
    evo: FakeEvolution, http: aiohttp.ClientSession, body: dict[str, Any], message: list[Any]
) -> None:
    status, answer, _ = await call(http, "POST", send_url(evo), body)
    assert (status, answer) == (400, {"status": 400, "error": "Bad Request", "response": {"message": message}})
    assert evo.sent == []


async def test_group_and_jid_numbers(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    for number, jid in (("120363025246125486@g.us", "120363025246125486@g.us"), ("123@lid", "123@lid")):
        _, answer, _ = await call(http, "POST", send_url(evo), {"number": number, "text": "x"})
        assert answer["key"]["remoteJid"] == jid


async def test_send_presence(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    url = f"{evo.url}/chat/sendPresence/{INSTANCE}"
    status, answer, _ = await call(http, "POST", url, {"number": PHONE, "presence": "composing", "delay": 3000})
    assert (status, answer) == (201, {"presence": "composing"})
    status, answer, _ = await call(http, "POST", url, {"number": PHONE, "presence": "typing", "delay": 3000})
    assert status == 400 and answer["response"]["message"][0].startswith("presence is not one of enum values")
    status, _, _ = await call(http, "POST", url, {"number": PHONE, "presence": "composing"})
    assert status == 400
    status, _, _ = await call(http, "POST", url, {"number": PHONE, "presence": "composing", "delay": 1}, "bad")
    assert status == 401
    assert [p.status for p in evo.presences] == [201, 400, 400, 401] and evo.sent == []


async def test_failure_injection(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    evo.fail_next(429, retry_after=1.5)
    evo.fail_next(500, count=2)
    body = {"number": PHONE, "text": "x"}
    status, answer, response = await call(http, "POST", send_url(evo), body)
    assert (status, answer) == (429, {"status": 429, "error": "Too Many Requests",
                                      "response": {"message": "Too Many Requests"}})
    assert response.headers["Retry-After"] == "1.5"
    for _ in range(2):
        status, answer, _ = await call(http, "POST", send_url(evo), body)
        assert (status, answer["error"]) == (500, "Internal Server Error")
    assert (await call(http, "POST", send_url(evo), body))[0] == 201
    assert [r.status for r in evo.requests] == [429, 500, 500, 201] and len(evo.sent) == 1


async def test_webhook_set_and_find(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    find = f"{evo.url}/webhook/find/{INSTANCE}"
    assert (await call(http, "GET", find))[:2] == (200, None)
    status, row = await set_webhook(http, evo, enabled=True, url="https://bot.example/hooks/evo",
                                    headers={"X-Secret": "s"}, byEvents=False, base64=True,
                                    events=["MESSAGES_UPSERT", "SEND_MESSAGE"])
    assert status == 201
    assert set(row) == {"id", "url", "headers", "enabled", "events", "webhookByEvents", "webhookBase64",
                        "createdAt", "updatedAt", "instanceId"}
    assert (row["url"], row["enabled"], row["events"]) == ("https://bot.example/hooks/evo", True,
                                                          ["MESSAGES_UPSERT", "SEND_MESSAGE"])
    assert (row["webhookByEvents"], row["webhookBase64"], row["headers"]) == (False, True, {"X-Secret": "s"})
    assert row["instanceId"] == evo.default.instance_id and row["createdAt"] == "2024-10-27T03:33:20.000Z"
    assert (await call(http, "GET", find))[:2] == (200, row)
    assert evo.webhook == row
    _, row = await set_webhook(http, evo, enabled=True, url="https://bot.example/other")
    assert row["events"] == EVOLUTION_EVENTS
    _, row = await set_webhook(http, evo, enabled=False, url="https://bot.example/other", events=["SEND_MESSAGE"])
    assert row["events"] == [] and row["enabled"] is False


async def test_webhook_set_flat_body_and_errors(evo: FakeEvolution, http: aiohttp.ClientSession) -> None:
    url = f"{evo.url}/webhook/set/{INSTANCE}"
    flat = {"url": "https://bot.example/x", "webhookByEvents": True, "webhook_base64": False,
            "events": ["MESSAGES_UPSERT"]}
    status, row, _ = await call(http, "POST", url, flat)
    assert status == 201 and row["webhookByEvents"] is True and row["events"] == ["MESSAGES_UPSERT"]

    def message(answer: Any) -> Any:
        return answer["response"]["message"]

    status, answer = await set_webhook(http, evo, enabled=True, url="not a url")
    assert (status, message(answer)) == (400, ['Invalid "url" property'])
    status, answer = await set_webhook(http, evo, url="https://x")
    assert (status, message(answer)) == (400, ['webhook requires property "enabled"'])
    status, answer = await set_webhook(http, evo, enabled=True, url="https://x", events=["MESSAGE_UPSERT"])
    assert status == 400 and message(answer)[0].startswith("webhook.events[0] is not one of enum values")
    status, answer, _ = await call(http, "POST", url, {})
    assert (status, message(answer)) == (400, ['instance requires property "webhook"'])
    assert (await call(http, "POST", url, flat, "wrong"))[:2] == (401, UNAUTHORIZED)
    assert [r.status for r in evo.config_requests] == [201, 400, 400, 400, 400, 401]


def test_text_message_envelope(evo: FakeEvolution) -> None:
    payload = evo.text_message(PHONE, "Oi, tudo bem?", name="Giovanna", message_id="3A554E20ECABF3D45BB2")
    assert set(payload) == ENVELOPE_FIELDS
    assert (payload["event"], payload["instance"], payload["apikey"]) == ("messages.upsert", INSTANCE, None)
    assert payload["sender"] == evo.default.owner_jid and payload["server_url"] == evo.url
    assert payload["date_time"] == "2024-10-27T03:33:20.000Z"
    assert payload["data"] == {
        "key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": False, "id": "3A554E20ECABF3D45BB2"},
        "pushName": "Giovanna",
        "status": "DELIVERY_ACK",
        "message": {"conversation": "Oi, tudo bem?", "messageContextInfo": {}},
        "messageType": "conversation",
        "messageTimestamp": int(NOW),
        "instanceId": evo.default.instance_id,
        "source": "android",
    }


def test_variant_payloads(evo: FakeEvolution) -> None:
    group = evo.text_message(PHONE, "hi", group=True)["data"]["key"]
    assert group["remoteJid"].endswith("@g.us") and group["participant"] == f"{PHONE}@s.whatsapp.net"
    lid_group = evo.text_message(PHONE, "hi", group="120363000000000001", lid=True)["data"]["key"]
    assert lid_group["remoteJid"] == "120363000000000001@g.us"
    assert lid_group["participant"].endswith("@lid") and lid_group["participantAlt"] == f"{PHONE}@s.whatsapp.net"
    lid = evo.text_message(PHONE, "hi", lid=True)["data"]["key"]
    assert lid["remoteJid"].endswith("@lid") and lid["remoteJidAlt"] == f"{PHONE}@s.whatsapp.net"
    assert lid["addressingMode"] == "lid"
    news = evo.text_message(PHONE, "post", newsletter=True)["data"]["key"]
    assert news["remoteJid"].endswith("@newsletter") and "participant" not in news
    status = evo.text_message(PHONE, "story", status_broadcast=True)["data"]["key"]
    assert status["remoteJid"] == "status@broadcast" and status["participant"] == f"{PHONE}@s.whatsapp.net"
    own = evo.text_message(PHONE, "typed on phone", from_me=True)["data"]
    assert own["key"]["fromMe"] is True and own["status"] == "SERVER_ACK"
    extended = evo.text_message(PHONE, "old", extended=True)["data"]
    assert extended["message"] == {"extendedTextMessage": {"text": "old"}}
    assert extended["messageType"] == "extendedTextMessage"
    image = evo.image_message(PHONE, caption="look", base64_data="aGk=")["data"]
    assert image["messageType"] == "imageMessage" and image["message"]["imageMessage"]["caption"] == "look"
    assert image["message"]["base64"] == "aGk="
    audio = evo.audio_message(PHONE, seconds=4)["data"]["message"]["audioMessage"]
    assert (audio["ptt"], audio["seconds"], audio["mimetype"]) == (True, 4, "audio/ogg; codecs=opus")
    wrong = evo.text_message(PHONE, "x", instance="someone-else")
    assert wrong["instance"] == "someone-else"
    update = evo.status_update("3EB0AAA", PHONE, "READ")
    assert update["event"] == "messages.update"
    assert update["data"] == {"keyId": "3EB0AAA", "remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": True,
                              "status": "READ", "instanceId": evo.default.instance_id}
    sent = evo.send_message_event({"key": {"id": "3EB0X"}})
    assert (sent["event"], sent["data"]) == ("send.message", {"key": {"id": "3EB0X"}})


async def test_exposed_apikey() -> None:
    async with FakeEvolution(instance_token=TOKEN, expose_apikey=True) as evo:
        assert evo.text_message(PHONE, "x")["apikey"] == TOKEN


async def test_push_sends_exact_json(evo: FakeEvolution, hook: WebhookReceiver) -> None:
    payload = evo.text_message(PHONE, "dup", message_id="SAME")
    assert await evo.push_many(f"{hook.url}/evo", [payload, payload], concurrently=True) == [200, 200]
    first, second = hook.received
    assert first.body == second.body == orjson.dumps(payload)
    assert first.headers["Content-Type"] == "application/json" and first.headers["User-Agent"].startswith("axios/")
    assert first.json()["data"]["key"]["id"] == "SAME"


async def test_emit_follows_the_configuration(
    evo: FakeEvolution, http: aiohttp.ClientSession, hook: WebhookReceiver
) -> None:
    payload = evo.text_message(PHONE, "hello")
    assert await evo.emit(payload) is None  # no webhook yet
    await set_webhook(http, evo, enabled=True, url=hook.url + "/hooks", byEvents=True,
                      headers={"X-Secret": "s3", "jwt_key": "jwt-secret"}, events=["MESSAGES_UPSERT"])
    payload = evo.text_message(PHONE, "hello")
    assert payload["destination"] == hook.url + "/hooks"
    assert await evo.emit(payload) == 200
    [received] = hook.received
    assert received.path == "/hooks/messages-upsert" and received.headers["X-Secret"] == "s3"
    assert "jwt_key" not in received.headers
    token = received.headers["Authorization"].removeprefix("Bearer ")
    header, claims, signature = token.split(".")
    expected = hmac.new(b"jwt-secret", f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    decoded = orjson.loads(base64.urlsafe_b64decode(claims + "=="))
    assert decoded == {"iat": int(NOW), "exp": int(NOW) + 600, "app": "evolution", "action": "webhook"}
    assert await evo.emit(evo.status_update("X", PHONE)) is None  # MESSAGES_UPDATE not subscribed
    assert await evo.emit(evo.text_message(PHONE, "x", instance="ghost")) is None


async def test_emit_retries_like_evolution(
    evo: FakeEvolution, http: aiohttp.ClientSession, hook: WebhookReceiver
) -> None:
    await set_webhook(http, evo, enabled=True, url=hook.url, events=["MESSAGES_UPSERT"])
    hook.script(500, 503, 200)
    assert await evo.emit(evo.text_message(PHONE, "retry me")) == 200
    assert [(d.attempt, d.status) for d in evo.deliveries] == [(1, 500), (2, 503), (3, 200)]
    assert len({d.body for d in evo.deliveries}) == 1
    hook.script(404)
    assert await evo.emit(evo.text_message(PHONE, "give up")) == 404
    assert len(evo.deliveries) == 4
    hook.script(*[500] * 10)
    assert await evo.emit(evo.text_message(PHONE, "ten tries")) == 500
    assert len(evo.deliveries) == 14


async def test_api_sends_fire_send_message_not_upsert(
    evo: FakeEvolution, http: aiohttp.ClientSession, hook: WebhookReceiver
) -> None:
    await set_webhook(http, evo, enabled=True, url=hook.url, events=["MESSAGES_UPSERT"])
    await call(http, "POST", send_url(evo), {"number": PHONE, "text": "quiet"})
    await evo.drain_webhooks()
    assert hook.received == []
    await set_webhook(http, evo, enabled=True, url=hook.url, events=["MESSAGES_UPSERT", "SEND_MESSAGE"])
    _, answer, _ = await call(http, "POST", send_url(evo), {"number": PHONE, "text": "loud"})
    [received] = await hook.wait_for(1)
    body = received.json()
    assert (body["event"], body["instance"], body["data"]) == ("send.message", INSTANCE, answer)
    assert body["data"]["key"]["fromMe"] is True
