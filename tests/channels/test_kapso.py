"""Kapso end to end: the fake Kapso pushes signed payload-v2 webhooks to a real botline, which answers
through the fake LLM and sends Meta Cloud API bodies back to the fake Kapso (24-hour window enforced)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from botline.channels.base import DeliveryError
from botline.channels.kapso import KapsoAdapter, OutsideWindow
from botline.domain.inbound import MediaKind
from botline.domain.integrations import GroupPolicy, KapsoIntegration
from tests.channels.conftest import (
    assert_no_more_sends,
    connect,
    last_user_text,
    post,
    redeliver,
    roll_salt,
    wait_for_delivery_error,
)
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.kapso import FakeKapso
from tests.emulators.webhook_pusher import encode_payload
from tests.support.egress import loopback_provider_http
from tests.support.server import RunningServer

SECRET = "wh_sec_3kfj9dmfkg8s2"
PHONE = "15551234567"
IGNORED = {"received": 0, "ignored": 1, "duplicates": 0}
DAY = 24 * 3600


@pytest.fixture
async def kapso() -> AsyncIterator[FakeKapso]:
    async with FakeKapso(webhook_secret=SECRET, window="reject") as fake:
        yield fake


@pytest.fixture
def settings_overrides(kapso: FakeKapso) -> dict[str, Any]:
    return {"providers": {"kapso": {"api_url": kapso.url}}}


def integration(kapso: FakeKapso, **extra: Any) -> dict[str, Any]:
    return {"apiKey": kapso.api_key, "phoneNumberId": kapso.phone_number_id, "webhookSecretKey": SECRET, **extra}


async def deliver(server: RunningServer, kapso: FakeKapso, url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """POSTs a webhook exactly as Kapso does (signed, event header) and returns the server's answer."""
    body = encode_payload(payload)
    batch = len(payload["data"]) if payload.get("batch") is True else None
    return await post(server, url, body, kapso.webhook_headers(body, kapso.event_of(payload), batch_size=batch))


async def test_a_message_gets_exactly_one_reply_in_cloud_api_format(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    assert channel.saved["registration"] == {"mode": "manual", "error": None}

    assert await kapso.push(channel.webhook_url, kapso.text_message(PHONE, "Hello", name="John Doe")) == 200

    sent = (await kapso.wait_for_sends(1))[0]
    assert sent.path == f"/meta/whatsapp/v24.0/{kapso.phone_number_id}/messages"
    assert sent.headers["X-API-Key"] == kapso.api_key
    assert sent.body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PHONE,
                         "type": "text", "text": {"preview_url": False, "body": "echo: Hello"}}
    await assert_no_more_sends(kapso, 1)
    assert len(fake_llm.requests) == 1


async def test_the_same_webhook_twice_gets_one_reply(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))

    assert await kapso.push(channel.webhook_url, kapso.text_message(PHONE, "only once")) == 200
    status, answer = await redeliver(server, kapso.deliveries[0])

    assert (status, answer) == (200, {"received": 0, "ignored": 0, "duplicates": 1})
    await kapso.wait_for_sends(1)
    await assert_no_more_sends(kapso, 1)
    assert len(fake_llm.requests) == 1


async def test_a_wrong_token_or_signature_is_rejected_and_records_nothing(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    message = kapso.text_message(PHONE, "let me in", message_id="wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUI=")

    assert await kapso.push(channel.with_token("A" * 32), message) == 404
    assert await kapso.push(channel.webhook_url, message, bad_signature=True) == 401
    assert await kapso.push(channel.webhook_url, message, sign=False) == 401
    assert await kapso.push(channel.webhook_url, message, secret="another-projects-secret") == 401
    await assert_no_more_sends(kapso, 0)
    assert fake_llm.requests == []

    status, answer = await deliver(server, kapso, channel.webhook_url, message)  # nothing was recorded before
    assert (status, answer["received"]) == (200, 1)
    await kapso.wait_for_sends(1)


async def test_a_burst_inside_the_debounce_window_is_one_turn(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso), messageDebounceInterval="00:00:01")

    for text in ("first", "second", "third"):
        assert await kapso.push(channel.webhook_url, kapso.text_message(PHONE, text)) == 200

    sent = (await kapso.wait_for_sends(1, timeout=5))[0]
    assert len(fake_llm.requests) == 1
    assert last_user_text(fake_llm) == "first\nsecond\nthird"
    assert sent.body["text"]["body"] == "echo: first\nsecond\nthird"
    await assert_no_more_sends(kapso, 1)


async def test_api_echoes_and_statuses_are_ignored(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    ignored = [
        kapso.outbound_message(PHONE, "sent through the API"),
        kapso.status_event("wamid.HBgLsent", PHONE, "delivered"),
        kapso.status_event("wamid.HBgLsent", PHONE, "read"),
        kapso.status_event("wamid.HBgLsent", PHONE, "failed"),
        {**kapso.text_message(PHONE, "for another number"), "phone_number_id": "999999999999999"},
    ]
    for payload in ignored:
        assert await deliver(server, kapso, channel.webhook_url, payload) == (200, IGNORED), payload
    await assert_no_more_sends(kapso, 0)
    assert fake_llm.requests == []

    batch = kapso.batch([kapso.text_message(PHONE, "in a batch"), kapso.outbound_message(PHONE, "API send in a batch")])
    assert await deliver(server, kapso, channel.webhook_url, batch) == (
        200, {"received": 1, "ignored": 1, "duplicates": 0}
    )
    assert (await kapso.wait_for_sends(1))[0].body["text"]["body"] == "echo: in a batch"


async def test_our_own_reply_coming_back_as_sent_is_not_answered(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    kapso.webhook_url = channel.webhook_url

    assert await kapso.emit(kapso.text_message(PHONE, "ping")) == 200
    await kapso.wait_for_sends(1)
    deliveries = await kapso.wait_for_deliveries(2)  # ping, then whatsapp.message.sent for our reply

    assert deliveries[1].headers["X-Webhook-Event"] == "whatsapp.message.sent" and deliveries[1].status == 200
    await assert_no_more_sends(kapso, 1)
    assert len(fake_llm.requests) == 1


async def test_groups_are_ignored_by_default_and_answered_when_allowed(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    group = kapso.text_message(PHONE, "hi all", group=True)
    assert await deliver(server, kapso, channel.webhook_url, group) == (200, IGNORED)
    await assert_no_more_sends(kapso, 0)

    allowed = await connect(server, fake_llm, "Kapso", integration(kapso, groupPolicy="All"))
    kapso.window = "off"  # the emulator keeps 24-hour windows per contact, not per group
    assert await kapso.push(allowed.webhook_url, kapso.text_message(PHONE, "hi all", group=True)) == 200
    sent = (await kapso.wait_for_sends(1))[0]
    assert (sent.body["recipient_type"], sent.body["to"]) == ("group", group["message"]["group_id"])


async def test_a_429_with_retry_after_is_retried_and_the_reply_arrives_once(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    kapso.fail_next(429, retry_after=1)

    await kapso.push(channel.webhook_url, kapso.text_message(PHONE, "busy?"))
    await kapso.wait_for_requests(1)
    refused_at = time.monotonic()
    await kapso.wait_for_sends(1, timeout=5)

    assert time.monotonic() - refused_at >= 0.9  # Retry-After, not the 0.5 s first backoff
    assert [r.status for r in kapso.requests] == [429, 200]
    await assert_no_more_sends(kapso, 1)


async def test_a_send_failing_for_good_is_recorded_on_the_session(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))
    kapso.fail_next(503, retry_after=0.01, count=5)

    await kapso.push(channel.webhook_url, kapso.text_message(PHONE, "anyone?"))
    session = await wait_for_delivery_error(server, channel.client_id, f"Kapso:{PHONE}")

    assert [r.status for r in kapso.requests] == [503] * 5
    assert session.last_delivery_error == "Kapso answered HTTP 503: (#2) Service temporarily unavailable"
    assert session.message_count == 2
    await kapso.push(channel.webhook_url, kapso.text_message(PHONE, "still there?"))
    assert (await kapso.wait_for_sends(1))[0].body["text"]["body"] == "echo: still there?"


async def test_the_view_masks_secrets_and_rolling_the_salt_retires_the_url(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    channel = await connect(server, fake_llm, "Kapso", integration(kapso))

    status, client = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}")
    assert status == 200
    view = client["integrations"]["kapsoIntegration"]
    assert view["phoneNumberId"] == kapso.phone_number_id
    assert view["apiKey"] == view["webhookSecretKey"] == "********"
    assert view["webhookUrl"] == channel.webhook_url
    assert kapso.api_key not in str(client) and SECRET not in str(client)

    await roll_salt(server)
    assert await kapso.push(channel.webhook_url, kapso.text_message(PHONE, "old url")) == 404
    await assert_no_more_sends(kapso, 0)
    assert fake_llm.requests == []


# -- the adapter on its own ------------------------------------------------------------------------


async def test_outside_the_24_hour_window_text_fails_clearly_and_a_template_goes_through(kapso: FakeKapso) -> None:
    config = KapsoIntegration(api_key=kapso.api_key, phone_number_id=kapso.phone_number_id)
    kapso.note_inbound(PHONE, at=time.time() - DAY - 60)
    async with loopback_provider_http() as http:
        adapter = KapsoAdapter(http, kapso.url)
        with pytest.raises(OutsideWindow) as refused:
            await adapter.send_text(config, PHONE, "Following up as promised")
        await adapter.send_template(config, PHONE, "continued_message", "Following up as promised")
        await adapter.send_template(config, PHONE, "continued_message", "Seguindo", language="pt_BR")

    assert refused.value.retryable is False and "24-hour window" in refused.value.message
    assert "131047" in refused.value.message
    template = kapso.sent[0].body
    assert template == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": PHONE, "type": "template",
        "template": {"name": "continued_message", "language": {"code": "en"}, "components": [
            {"type": "body", "parameters": [
                {"type": "text", "parameter_name": "text", "text": "Following up as promised"}]}]},
    }
    assert kapso.sent[1].body["template"]["language"] == {"code": "pt_BR"}
    assert [r.status for r in kapso.requests] == [400, 200, 200]


async def test_refusals_are_classified_and_never_quote_the_key(kapso: FakeKapso) -> None:
    config = KapsoIntegration(api_key="wrong-api-key", phone_number_id=kapso.phone_number_id)
    kapso.note_inbound(PHONE)
    async with loopback_provider_http() as http:
        adapter = KapsoAdapter(http, kapso.url)
        with pytest.raises(DeliveryError) as unauthorized:
            await adapter.send_text(config, PHONE, "hi")
        good = config.model_copy(update={"api_key": kapso.api_key})
        kapso.fail_next(409)
        with pytest.raises(DeliveryError) as in_flight:
            await adapter.send_text(good, PHONE, "hi")
        kapso.fail_next(400, body=FakeKapso.graph_error("(#131056) Pair rate limit hit", 131056))
        with pytest.raises(DeliveryError) as pair_rate:
            await adapter.send_text(good, PHONE, "hi")

    assert unauthorized.value.message == "Kapso answered HTTP 401: Invalid API key"
    assert unauthorized.value.retryable is False
    assert in_flight.value.retryable is True and "in-flight" in in_flight.value.message
    assert pair_rate.value.retryable is True


def test_media_transcripts_and_raw_meta_payloads_are_read(kapso: FakeKapso) -> None:
    adapter = KapsoAdapter.__new__(KapsoAdapter)  # parse is pure: no HTTP session needed
    config = KapsoIntegration(api_key="k", phone_number_id=kapso.phone_number_id, group_policy=GroupPolicy.IGNORE)

    [image] = adapter.parse(config, kapso.image_message(PHONE, caption="look", name="Ana")).messages
    [voice] = adapter.parse(config, kapso.audio_message(PHONE, transcript="call me back")).messages
    [raw_voice] = adapter.parse(config, kapso.audio_message(PHONE)).messages
    meta = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": kapso.phone_number_id},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.HBgL1", "timestamp": "1749416383", "type": "text",
                          "text": {"body": "Does it come in another color?"}}],
            "statuses": [{"id": "wamid.HBgL0", "status": "read", "recipient_id": "16505551234"}]}}]}]}
    from_meta = adapter.parse(config, meta)

    assert (image.text, image.sender_name, image.media[0].kind) == ("look", "Ana", MediaKind.IMAGE)
    assert image.media[0].url and image.media[0].filename == "photo.jpg" and image.media[0].mime_type == "image/jpeg"
    assert (voice.text, voice.media) == ("call me back", ())
    assert raw_voice.media[0].kind is MediaKind.AUDIO
    assert from_meta.ignored == 1
    [message] = from_meta.messages
    assert (message.chat_id, message.sender_name, message.text) == (
        "16505551234", "Sheena Nelson", "Does it come in another color?"
    )
    assert message.timestamp is not None and message.timestamp.year == 2025
