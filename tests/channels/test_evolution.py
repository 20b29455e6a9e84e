"""Evolution API v2 end to end: saving the integration registers botline's webhook at the fake
Evolution server, which then delivers messages.upsert events; replies go back through sendText."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from botline.channels.base import DeliveryError
from botline.channels.evolution import EvolutionAdapter
from botline.domain.inbound import MediaKind
from botline.domain.integrations import EvolutionIntegration, GroupPolicy
from tests.channels.conftest import (
    assert_no_more_sends,
    connect,
    last_user_text,
    post,
    redeliver,
    roll_salt,
    save_integration,
    session_of,
    wait_for_delivery_error,
)
from tests.emulators.evolution import FakeEvolution
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.webhook_pusher import JSON, encode_payload
from tests.support.egress import loopback_provider_http
from tests.support.server import RunningServer

PHONE = "5511999999999"
IGNORED = {"received": 0, "ignored": 1, "duplicates": 0}


@pytest.fixture
async def evo() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(expose_apikey=True, retry_scale=0.001) as fake:
        yield fake


@pytest.fixture
def settings_overrides(evo: FakeEvolution) -> dict[str, Any]:
    return {}  # Evolution is the user's own server: its URL is the integration's endpointUrl


def integration(evo: FakeEvolution, **extra: Any) -> dict[str, Any]:
    return {"endpointUrl": evo.url, "instanceName": evo.instance, "apiKey": evo.default.token, **extra}


async def deliver(server: RunningServer, url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """POSTs an event exactly as Evolution does (axios JSON) and returns the server's answer."""
    return await post(server, url, encode_payload(payload), {"Content-Type": JSON, "User-Agent": "axios/1.7.9"})


async def test_saving_registers_the_webhook_and_a_message_gets_one_reply(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))

    assert channel.saved["registration"] == {"mode": "webhook", "error": None}
    assert evo.webhook is not None
    assert (evo.webhook["url"], evo.webhook["enabled"], evo.webhook["events"]) == (
        channel.webhook_url, True, ["MESSAGES_UPSERT"]
    )
    assert evo.webhook["webhookByEvents"] is False

    assert await evo.emit(evo.text_message(PHONE, "olá", name="Giovanna")) == 200

    sent = (await evo.wait_for_sends(1))[0]
    assert sent.path == f"/message/sendText/{evo.instance}"
    assert sent.headers["apikey"] == evo.default.token
    assert sent.body == {"number": PHONE, "text": "echo: olá"}
    assert sent.status == 201
    await assert_no_more_sends(evo, 1)
    assert len(fake_llm.requests) == 1
    assert all(p.body["presence"] == "composing" and p.status == 201 for p in evo.presences)


async def test_the_same_event_twice_gets_one_reply(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    await connect(server, fake_llm, "EvolutionApi", integration(evo))

    assert await evo.emit(evo.text_message(PHONE, "only once")) == 200
    status, answer = await redeliver(server, evo.deliveries[0])

    assert (status, answer) == (200, {"received": 0, "ignored": 0, "duplicates": 1})
    await evo.wait_for_sends(1)
    await assert_no_more_sends(evo, 1)
    assert len(fake_llm.requests) == 1


async def test_wrong_token_instance_or_apikey_is_rejected_and_records_nothing(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))
    message = evo.text_message(PHONE, "let me in", message_id="3A554E20ECABF3D45BB2")
    other = evo.add_instance("someone-else")

    assert await evo.push(channel.with_token("A" * 32), message) == 404
    status, answer = await deliver(server, channel.webhook_url, {**message, "instance": other.name})
    assert status == 403 and "instance" in answer["message"]
    status, answer = await deliver(server, channel.webhook_url, {**message, "apikey": other.token})
    assert status == 401 and "apikey" in answer["message"] and other.token not in str(answer)
    assert (await deliver(server, channel.webhook_url, {**message, "instance": None}))[0] == 403
    await assert_no_more_sends(evo, 0)
    assert fake_llm.requests == []

    status, answer = await deliver(server, channel.webhook_url, message)  # not a duplicate: nothing was recorded
    assert (status, answer["received"]) == (200, 1)
    await evo.wait_for_sends(1)


async def test_a_burst_inside_the_debounce_window_is_one_turn(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    await connect(server, fake_llm, "EvolutionApi", integration(evo), messageDebounceInterval="00:00:01")

    for text in ("first", "second", "third"):
        assert await evo.emit(evo.text_message(PHONE, text)) == 200

    sent = (await evo.wait_for_sends(1, timeout=5))[0]
    assert len(fake_llm.requests) == 1
    assert last_user_text(fake_llm) == "first\nsecond\nthird"
    assert sent.body["text"] == "echo: first\nsecond\nthird"
    await assert_no_more_sends(evo, 1)


async def test_api_sends_statuses_and_non_chats_are_ignored(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))
    sent_raw = {"key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": True, "id": "3EB0C0BD05DCA97A7C09CB"},
                "pushName": "Você", "status": "PENDING", "message": {"conversation": "our reply"},
                "messageType": "conversation", "messageTimestamp": 1730000000, "source": "web"}
    ignored = [
        evo.send_message_event(sent_raw),
        evo.status_update("3EB0C0BD05DCA97A7C09CB", PHONE, "READ"),
        evo.text_message(PHONE, "reply to a status", status_broadcast=True),
        evo.text_message(PHONE, "channel post", newsletter=True),
        evo.envelope("connection.update", {"state": "open"}),
        evo.envelope("messages.upsert", {**evo.text_message(PHONE, "x")["data"], "message": {"reactionMessage": {}}}),
    ]
    for payload in ignored:
        assert await deliver(server, channel.webhook_url, payload) == (200, IGNORED), payload
    await assert_no_more_sends(evo, 0)
    assert fake_llm.requests == []


async def test_groups_are_ignored_by_default_and_answered_when_allowed(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))
    assert await deliver(server, channel.webhook_url, evo.text_message(PHONE, "hi all", group=True)) == (200, IGNORED)
    await assert_no_more_sends(evo, 0)

    allowed = await connect(server, fake_llm, "EvolutionApi", integration(evo, groupPolicy="All"))
    assert await evo.push(allowed.webhook_url, evo.text_message(PHONE, "hi all", group=True)) == 200
    sent = (await evo.wait_for_sends(1))[0]
    assert sent.body["number"] == "120363025246125486@g.us"


async def test_lid_senders_are_answered_by_phone_when_evolution_knows_it(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))

    await evo.emit(evo.text_message(PHONE, "from a lid", lid=True))
    assert (await evo.wait_for_sends(1))[0].body["number"] == PHONE
    assert await session_of(server, channel.client_id, f"EvolutionApi:{PHONE}") is not None

    unresolved = evo.text_message(PHONE, "no alt", lid=True)
    del unresolved["data"]["key"]["remoteJidAlt"]
    await evo.emit(unresolved)
    lid_jid = unresolved["data"]["key"]["remoteJid"]
    assert lid_jid.endswith("@lid")
    assert (await evo.wait_for_sends(2))[1].body["number"] == lid_jid


async def test_a_429_with_retry_after_is_retried_and_the_reply_arrives_once(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    await connect(server, fake_llm, "EvolutionApi", integration(evo))
    evo.fail_next(429, retry_after=1)

    await evo.emit(evo.text_message(PHONE, "busy?"))
    await evo.wait_for_requests(1)
    refused_at = time.monotonic()
    await evo.wait_for_sends(1, timeout=5)

    assert time.monotonic() - refused_at >= 0.9  # Retry-After, not the 0.5 s first backoff
    assert [r.status for r in evo.requests if r.endpoint == "sendText"] == [429, 201]
    await assert_no_more_sends(evo, 1)


async def test_a_send_failing_for_good_is_recorded_on_the_session(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))
    evo.fail_next(503, retry_after=0.01, count=5)

    await evo.emit(evo.text_message(PHONE, "anyone?"))
    session = await wait_for_delivery_error(server, channel.client_id, f"EvolutionApi:{PHONE}")

    assert [r.status for r in evo.requests if r.endpoint == "sendText"] == [503] * 5
    assert session.last_delivery_error == "Evolution API answered HTTP 503: Service Unavailable"
    assert session.message_count == 2
    await evo.emit(evo.text_message(PHONE, "still there?"))
    assert (await evo.wait_for_sends(1))[0].body["text"] == "echo: still there?"


async def test_the_view_masks_secrets_and_rolling_the_salt_retires_the_url(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo))

    status, client = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}")
    assert status == 200
    view = client["integrations"]["evolutionIntegration"]
    assert (view["instanceName"], view["endpointUrl"], view["apiKey"]) == (evo.instance, evo.url, "********")
    assert view["webhookUrl"] == channel.webhook_url and evo.default.token not in str(client)

    await roll_salt(server)
    assert await evo.push(channel.webhook_url, evo.text_message(PHONE, "old url")) == 404
    await assert_no_more_sends(evo, 0)
    assert fake_llm.requests == []


async def test_a_failed_registration_is_reported_in_the_put_response(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi", integration(evo, apiKey="not-the-key"))
    assert channel.saved["registration"] == {
        "mode": "webhook", "error": "Evolution API answered HTTP 401: Unauthorized"
    }
    assert evo.webhook is None

    status, saved = await save_integration(server, channel.client_id, "EvolutionApi", {
        "evolutionIntegration": integration(evo, endpointUrl="http://127.0.0.1:9", apiKey="not-the-key-either"),
    })
    assert status == 200
    assert saved["registration"]["error"] == "Evolution API unreachable: the request failed (ClientConnectorError)"
    assert "not-the-key" not in str(saved)


# -- the adapter on its own ------------------------------------------------------------------------


async def test_inline_media_and_typing(evo: FakeEvolution) -> None:
    picture = base64.b64encode(b"\x89PNG fake").decode()
    config = EvolutionIntegration(endpoint_url=evo.url, instance_name=evo.instance, api_key=evo.api_key,
                                  group_policy=GroupPolicy.IGNORE)
    async with loopback_provider_http() as http:
        adapter = EvolutionAdapter(http)
        [image] = adapter.parse(config, evo.image_message(PHONE, caption="look", base64_data=picture)).messages
        [voice] = adapter.parse(config, evo.audio_message(PHONE, base64_data=picture)).messages
        [older] = adapter.parse(config, evo.text_message(PHONE, "old style", extended=True)).messages
        assert await adapter.fetch_media(config, image.media[0]) == b"\x89PNG fake"
        await adapter.typing(config, PHONE)
        evo.unknown_numbers.add("5500000000000")
        with pytest.raises(DeliveryError) as unknown:
            await adapter.send_text(config, "5500000000000", "hi")

    assert (image.text, image.media[0].kind, image.media[0].mime_type) == ("look", MediaKind.IMAGE, "image/jpeg")
    assert voice.media[0].kind is MediaKind.AUDIO and voice.text == ""
    assert older.text == "old style" and older.timestamp is not None
    assert evo.presences[0].body == {"number": PHONE, "presence": "composing", "delay": 5000}
    assert unknown.value.retryable is False and "is not on WhatsApp" in unknown.value.message
