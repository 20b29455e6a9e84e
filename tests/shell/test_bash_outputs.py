"""Files the model writes under out/ reach the person: on the web chat a download chip whose public
address serves the file (local disk and S3), on Telegram a sendDocument with the file's bytes; where
nobody sees files (/v1) the model is told so. Symlinks and files outside out/ are never sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botline.api.state import SERVICES
from tests.channels.conftest import save_integration
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.telegram import TelegramEmulator
from tests.shell.conftest import shell_settings
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import create_client, open_session, prompt, public

CSV = b"region,total\nnorth,10\nsouth,32\n"
MAKE_REPORT = ("mkdir -p out && printf 'region,total\\nnorth,10\\nsouth,32\\n' > out/report.csv "
               "&& ln -s /etc/passwd out/passwd && echo scratch > notes.txt")
PERSIST = {"enableBash": True, "bashOptions": {"allowDataPersistence": True}}


@pytest.fixture
async def bash_server(backend: str, traversable: Path, tmp_path: Path, telegram: TelegramEmulator,
                      request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    endpoint = request.getfixturevalue("s3_endpoint") if backend == "s3" else None
    shell = shell_settings(backend, traversable, endpoint, bash={"timeout_seconds": 5})
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", shell=shell,
                             providers={"telegram": {"api_url": telegram.url, "mode": "webhook"}})
    async with running_server(settings) as running:
        assert running.app is not None
        if running.app[SERVICES].sandbox.unavailable:
            pytest.skip(f"no sandbox on this host: {running.app[SERVICES].sandbox.unavailable}")
        yield running


def report_turn(fake: FakeLLM) -> None:
    fake.script(Reply(tool_calls=[ToolCall("bash", {"command": MAKE_REPORT})]), Reply(text="Here is the report."))


def tool_message(fake: FakeLLM) -> str:
    return str(next(m for m in fake.requests[-1].body["messages"] if m["role"] == "tool")["content"])


async def test_the_web_chat_shows_a_chip_whose_address_downloads_the_file(bash_server: RunningServer,
                                                                          fake_llm: FakeLLM) -> None:
    client_id = await create_client(bash_server, fake_llm, gateway=PERSIST)
    session = await open_session(bash_server, client_id, tag="alice")
    report_turn(fake_llm)
    status, body = await bash_server.call("POST", public(session["accessKey"], "/prompt"),
                                          json=prompt("make me the sales report"))
    assert status == 200 and body["completionText"] == "Here is the report."
    [chip] = body["media"]
    assert chip["kind"] == "file" and chip["fileName"] == "report.csv" and chip["contentType"] == "text/csv"
    assert chip["url"].startswith(bash_server.url + "/api/v1/public/ext-res/file/")
    async with bash_server.http.get(chip["url"]) as response:  # no key: the address is the key
        assert response.status == 200 and await response.read() == CSV
        assert response.headers["Content-Disposition"].startswith('attachment; filename="report.csv"')
    assert "Sent to the user with your answer: report.csv (text/csv)" in tool_message(fake_llm)


@pytest.mark.parametrize("backend", ["local"])
async def test_telegram_receives_the_file_as_a_document(bash_server: RunningServer, fake_llm: FakeLLM,
                                                        telegram: TelegramEmulator) -> None:
    client_id = await create_client(bash_server, fake_llm, gateway={"enableBash": True})  # scratch space
    status, saved = await save_integration(bash_server, client_id, "Telegram",
                                           {"telegramIntegration": {"botToken": telegram.token}})
    assert status == 200, saved
    report_turn(fake_llm)
    await telegram.push(telegram.text_update(515151, "send me the sales report"))
    sent = await telegram.wait_for_messages(2)
    assert sent[0]["text"] == "Here is the report."
    assert sent[1]["message"]["document"]["file_name"] == "report.csv"
    [call] = telegram.calls_to("sendDocument")
    assert call.params["document"]["data"] == CSV


@pytest.mark.parametrize("backend", ["local"])
async def test_on_v1_the_model_is_told_files_cannot_be_shown(bash_server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(bash_server, fake_llm, **PERSIST)
    report_turn(fake_llm)
    status, answer = await bash_server.call("POST", "/v1/chat/completions", json={
        "model": gateway_id, "user": "alice", "messages": [{"role": "user", "content": "report"}]})
    assert status == 200, answer
    assert "cannot be shown in this conversation: out/report.csv." in tool_message(fake_llm)


@pytest.mark.parametrize("backend", ["local"])
async def test_a_name_no_storage_holds_is_not_sent_and_the_model_is_told(bash_server: RunningServer,
                                                                         fake_llm: FakeLLM) -> None:
    client_id = await create_client(bash_server, fake_llm, gateway=PERSIST)
    session = await open_session(bash_server, client_id, tag="alice")
    command = "mkdir -p out && echo x > 'out/a\\b.txt' && echo ok > out/ok.txt"
    fake_llm.script(Reply(tool_calls=[ToolCall("bash", {"command": command})]), Reply(text="Done."))
    status, body = await bash_server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("files"))
    assert status == 200, body
    assert [chip["fileName"] for chip in body["media"]] == ["ok.txt"]
    told = tool_message(fake_llm)
    assert "Not sent" in told and "out/a\\b.txt" in told and "Sent to the user with your answer: ok.txt" in told
