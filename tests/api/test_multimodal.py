"""What reaches the model per the gateway's `enabledMultimodalFeatures` and `DisableMultiModalInput`: the rest
becomes an attachment notice, so the model can say it cannot see or hear it."""

from __future__ import annotations

import base64
from typing import Any

import openai

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 2048).decode()
IMAGE = {"type": "image_url", "image_url": {"url": PNG}}
VOICE = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(), "format": "wav"}}
MENU = {"type": "file", "file": {"filename": "menu.md",
                                 "file_data": "data:text/markdown;base64," + base64.b64encode(b"# Menu").decode()}}


async def chat(server: RunningServer, fake: FakeLLM, **gateway: Any) -> str:
    client_id = await create_client(server, fake, gateway=gateway, inputModes=["Image", "Audio", "Document"])
    return str((await open_session(server, client_id))["accessKey"])


def last_user_parts(fake: FakeLLM) -> list[dict[str, Any]]:
    return list(fake.requests[-1].body["messages"][-1]["content"])


async def test_an_image_is_a_notice_when_the_gateway_does_not_enable_images(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await chat(server, fake_llm, enabledMultimodalFeatures=["Audio", "File"])
    content = [{"type": "text", "text": "What is this?"}, IMAGE]
    assert (await server.call("POST", public(key, "/prompt"), json=prompt(content)))[0] == 200
    text, notice = last_user_parts(fake_llm)
    assert text == {"type": "text", "text": "What is this?"}
    assert notice == {"type": "text", "text": "[Attachment: image (image/png, 2 KB) was sent; "
                                              "this assistant cannot see images]"}
    _, info = await server.call("GET", public(key))
    assert info["messages"][0]["content"][1] == IMAGE  # kept as sent: the page still shows it


async def test_all_or_nothing_listed_lets_every_kind_through(server: RunningServer, fake_llm: FakeLLM) -> None:
    for features in ([], ["All"], ["Image"]):
        key = await chat(server, fake_llm, enabledMultimodalFeatures=features)
        await server.call("POST", public(key, "/prompt"), json=prompt([IMAGE]))
        assert last_user_parts(fake_llm) == [IMAGE]


async def test_without_audio_a_voice_message_is_not_transcribed(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm, enabledMultimodalFeatures=["Image"])
    status, _ = await server.call("POST", public(key, "/prompt"), json=prompt([VOICE]))
    assert status == 200
    assert not any(r.path.endswith("/audio/transcriptions") for r in fake_llm.requests)
    [notice] = last_user_parts(fake_llm)
    assert notice["text"].startswith("[Attachment: voice.wav (audio/wav, 1 KB) is a voice message; "
                                     "this assistant does not take audio]")


async def test_without_file_a_document_is_not_read(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm, enabledMultimodalFeatures=["Image", "Audio"])
    await server.call("POST", public(key, "/prompt"), json=prompt([{"type": "text", "text": "Summarise"}, MENU]))
    notice = last_user_parts(fake_llm)[1]["text"]
    assert notice == "[Attachment: menu.md (text/markdown, 1 KB) was uploaded; this assistant does not read documents]"


async def test_a_text_only_model_gets_transcripts_and_documents_but_no_image(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await chat(server, fake_llm, flags=["DisableMultiModalInput"])
    fake_llm.script(Reply(text="what is on the menu"), Reply(text="Soup."))
    await server.call("POST", public(key, "/prompt"), json=prompt([VOICE, MENU, IMAGE]))
    voice, menu, image = last_user_parts(fake_llm)
    assert "what is on the menu" in voice["text"] and "# Menu" in menu["text"]
    assert image["text"].endswith("this assistant cannot see images]")


async def test_v1_parts_follow_the_same_rules(server: RunningServer, fake_llm: FakeLLM) -> None:
    text_only = await create_gateway(server, fake_llm, name="Text only", flags=["DisableMultiModalInput"])
    images = await create_gateway(server, fake_llm, name="Images")
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    for model in (text_only, images):
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": [VOICE, IMAGE]}])
    await client.close()
    first, second = fake_llm.requests[-2].body["messages"][-1]["content"], last_user_parts(fake_llm)
    assert [part["type"] for part in first] == ["text", "text"]
    assert first[0]["text"].endswith("this assistant cannot hear audio]")
    assert second == [VOICE, IMAGE]
