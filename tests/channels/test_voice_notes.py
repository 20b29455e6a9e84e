"""Spoken answers on every messaging channel: a voice note in, a voice note out (OGG/Opus from the fake
speech endpoint, checked page by page), the text as well unless the client says voice only, no voice
for a typed message by default, and never a lost text when synthesis fails."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.channels.conftest import QUIET_SECONDS, connect, connect_telegram
from tests.emulators.audio import ogg_opus, parse_ogg_opus
from tests.emulators.evolution import FakeEvolution
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.kapso import FakeKapso
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer

CHAT = 515151
PHONE = "5511988887777"
SPEAKS = {"audioSynthesisSource": "Gpt4oTts", "audioSynthesisVoice": "coral",
          "audioSynthesisInstruction": "Warm and calm.", "inputModes": ["Audio"]}


@pytest.fixture
def settings_overrides(telegram: TelegramEmulator, zapi: FakeZapi, kapso: FakeKapso) -> dict[str, Any]:
    return {"providers": {"telegram": {"api_url": telegram.url, "mode": "webhook"},
                          "zapi": {"api_url": zapi.url}, "kapso": {"api_url": kapso.url}}}


def voices(telegram: TelegramEmulator) -> list[dict[str, Any]]:
    return [call.params for call in telegram.calls_to("sendVoice") if call.status == 200]


async def test_telegram_voice_note_in_gets_text_and_voice_note_out(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram, **SPEAKS)
    fake_llm.script(Reply(text="where is my order?"),  # the transcript, then the answer
                    Reply(text="Your order ships **tomorrow**. Track it at https://shop.example/track/123"))
    await telegram.push(telegram.voice_update(CHAT, ogg_opus(0.5)))
    sent = await telegram.wait_for_messages(2)
    assert sent[0]["text"].startswith("Your order ships") and "message" in sent[0]
    assert "voice" in sent[1]["message"]  # the text first, then the voice note
    [upload] = voices(telegram)
    stream = parse_ogg_opus(upload["voice"]["data"])
    assert stream.channels == 1 and stream.seconds > 0.9  # the fake's one second, decoded page by page
    [speech] = fake_llm.speech_requests()
    assert speech.body["voice"] == "coral" and speech.body["instructions"] == "Warm and calm."
    assert speech.body["response_format"] == "opus" and speech.body["model"] == "gpt-4o-mini-tts"
    assert speech.body["input"] == "Your order ships tomorrow. Track it at shop.example."  # no URL read aloud


async def test_telegram_typed_message_gets_no_voice_by_default(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram, **SPEAKS)
    await telegram.push(telegram.text_update(CHAT, "hello"))
    await telegram.wait_for_messages(1)
    with pytest.raises(TimeoutError):
        await telegram.wait_for_messages(2, timeout=QUIET_SECONDS)
    assert fake_llm.speech_requests() == []


async def test_telegram_voice_only_and_always(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram, **SPEAKS, audioSynthesisTrigger="Always",
                           audioSynthesisWithText=False)
    await telegram.push(telegram.text_update(CHAT, "typed, yet spoken to"))
    [only] = await telegram.wait_for_messages(1)
    assert "voice" in only["message"] and only["text"] == ""
    with pytest.raises(TimeoutError):
        await telegram.wait_for_messages(2, timeout=QUIET_SECONDS)


async def test_a_synthesis_failure_never_loses_the_text(
    server: RunningServer, fake_llm: FakeLLM, telegram: TelegramEmulator
) -> None:
    await connect_telegram(server, fake_llm, telegram, **SPEAKS, audioSynthesisWithText=False)
    fake_llm.script_speech(Reply(status=400, error_message="voice 'coral' is not available"))
    fake_llm.script(Reply(text="a question"), Reply(text="Here is the answer."))
    await telegram.push(telegram.voice_update(CHAT, ogg_opus(0.2)))
    [sent] = await telegram.wait_for_messages(1)
    assert sent["text"] == "Here is the answer." and voices(telegram) == []


async def test_zapi_sends_the_voice_note_through_send_audio(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    zapi_integration = {"instanceId": zapi.instance_id, "instanceToken": zapi.instance_token}
    channel = await connect(server, fake_llm, "Zapi", zapi_integration, **SPEAKS, audioSynthesisTrigger="Always")
    await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "hi"))
    sends = await zapi.wait_for_sends(2)
    assert [s.endpoint for s in sends] == ["send-text", "send-audio"]
    audio = sends[1].body["audio"]
    assert audio.startswith("data:audio/ogg;base64,") and sends[1].body["phone"] == PHONE
    parse_ogg_opus(base64.b64decode(audio.split(",", 1)[1]))


async def test_evolution_voice_note_in_gets_send_whatsapp_audio(
    server: RunningServer, fake_llm: FakeLLM, evo: FakeEvolution
) -> None:
    channel = await connect(server, fake_llm, "EvolutionApi",
                  {"endpointUrl": evo.url, "instanceName": evo.instance, "apiKey": evo.default.token}, **SPEAKS)
    voice_in = base64.b64encode(ogg_opus(0.3)).decode()
    await evo.push(channel.webhook_url, evo.audio_message(PHONE, base64_data=voice_in))
    sends = await evo.wait_for_sends(2)
    assert [s.endpoint for s in sends] == ["sendText", "sendWhatsAppAudio"]
    assert sends[1].body["number"] == PHONE and sends[1].body["encoding"] is False
    assert sends[1].response["message"]["audioMessage"]["ptt"] is True
    parse_ogg_opus(evo.audio[0])


async def test_kapso_transcribed_voice_note_gets_an_uploaded_voice_note(
    server: RunningServer, fake_llm: FakeLLM, kapso: FakeKapso
) -> None:
    kapso_integration = {"apiKey": kapso.api_key, "phoneNumberId": kapso.phone_number_id}
    channel = await connect(server, fake_llm, "Kapso", kapso_integration, **SPEAKS)
    await kapso.push(channel.webhook_url, kapso.audio_message(PHONE, transcript="when do you open?"))
    sends = await kapso.wait_for_sends(2)
    assert [s.body["type"] for s in sends] == ["text", "audio"]
    audio = sends[1].body["audio"]
    assert audio["voice"] is True
    mime, data = kapso.media[audio["id"]]
    assert mime == "audio/ogg"
    parse_ogg_opus(data)
