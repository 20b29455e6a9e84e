"""Answer files kept with the web chat conversation: a tool's image and document come back with the session
(a reload), are served under the session's own access key only, with safe headers, and go with the
answer (retry), the conversation (reset) and the session (delete); past the session's budget they are
shown live only."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from botline.api.state import SERVICES
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.images import png
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public, sse_events

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
IMAGE = png(40, 20)


@pytest.fixture
async def site() -> AsyncIterator[CallbackServer]:
    async with CallbackServer() as running:
        yield running


def report_tool(site: CallbackServer) -> dict[str, Any]:
    """A protocol function answering with a PNG and a PDF (the documented attachments shape)."""
    body = {"text": "made", "attachments": [
        {"data": base64.b64encode(IMAGE).decode(), "contentType": "image/png", "fileName": "chart.png"},
        {"data": base64.b64encode(PDF).decode(), "contentType": "application/pdf", "fileName": "report.pdf"},
    ]}
    answer = Answer(body=orjson.dumps(body), content_type="application/json")
    return {"name": "make_report", "description": "Makes the report.", "callbackUrl": site.answer("/report", answer),
            "contentFormat": {"type": "object", "properties": {}}}


async def chat_with_files(server: RunningServer, fake_llm: FakeLLM, site: CallbackServer) -> tuple[str, str]:
    """A session whose client has the report tool; returns (its management path, access key)."""
    client_id = await create_client(server, fake_llm, gateway={"protocolFunctions": [report_tool(site)]})
    opened = await open_session(server, client_id)
    return f"/api/v1/web-chat-client/{client_id}/sessions/{opened['sessionId']}", str(opened["accessKey"])


async def ask_for_report(server: RunningServer, fake_llm: FakeLLM, key: str) -> dict[str, Any]:
    fake_llm.script(Reply(tool_calls=[ToolCall("make_report", {})]), Reply(text="Here is the report."))
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("report")) as response:
        return next(data for name, data in [e async for e in sse_events(response)] if name == "done")


async def fetch(server: RunningServer, key: str, media_id: str) -> tuple[int, dict[str, str], bytes]:
    async with server.http.get(server.url + public(key, f"/media/{media_id}")) as response:
        return response.status, dict(response.headers), await response.read()


async def test_files_come_back_with_the_session_and_are_served_safely(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    _, key = await chat_with_files(server, fake_llm, site)
    done = await ask_for_report(server, fake_llm, key)
    image, report = done["media"]
    assert (image["kind"], image["fileName"], report["kind"], report["fileName"]) == (
        "image", "chart.png", "file", "report.pdf")
    assert "url" not in image  # kept: fetched from botline, not carried in the event
    _, info = await server.call("GET", public(key))  # what a reload reads
    assert info["messages"][-1]["media"] == done["media"]
    status, headers, body = await fetch(server, key, image["id"])
    assert (status, headers["Content-Type"], body) == (200, "image/png", IMAGE)
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Content-Disposition"].startswith("inline")
    status, headers, body = await fetch(server, key, report["id"])
    assert (status, headers["Content-Type"], body) == (200, "application/octet-stream", PDF)
    assert headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    _, transcript = await server.call("GET", public(key, "/transcript.json"))
    assert [m.get("media") for m in transcript["messages"]] == [None, done["media"]]


async def test_another_sessions_key_cannot_fetch_a_file(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    _, key = await chat_with_files(server, fake_llm, site)
    image = (await ask_for_report(server, fake_llm, key))["media"][0]
    _, stranger = await chat_with_files(server, fake_llm, site)  # another tenant's session
    assert (await fetch(server, stranger, image["id"]))[0] == 404
    assert (await fetch(server, "not-a-key", image["id"]))[0] == 404
    assert (await fetch(server, key, "0" * 36))[0] == 404


async def test_retry_reset_and_delete_take_the_files_with_them(
    server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
) -> None:
    assert server.app is not None
    store = server.app[SERVICES].store
    path, key = await chat_with_files(server, fake_llm, site)
    session_id = path.rsplit("/", 1)[-1]
    first = (await ask_for_report(server, fake_llm, key))["media"][0]
    assert (await server.call("POST", public(key, "/retry")))[0] == 204
    assert (await fetch(server, key, first["id"]))[0] == 404
    second = (await ask_for_report(server, fake_llm, key))["media"][0]
    assert (await server.call("POST", public(key, "/reset")))[0] == 204
    assert (await fetch(server, key, second["id"]))[0] == 404
    await ask_for_report(server, fake_llm, key)
    assert len(await store.media.list(session_id)) == 2
    assert (await server.call("DELETE", path))[0] == 200
    assert await store.media.list(session_id) == []  # nothing left behind


class TestBudget:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"webchat": {"media_session_bytes": len(IMAGE) + 10}}

    async def test_a_file_past_the_sessions_budget_is_shown_live_only(
        self, server: RunningServer, fake_llm: FakeLLM, site: CallbackServer
    ) -> None:
        _, key = await chat_with_files(server, fake_llm, site)
        image, report = (await ask_for_report(server, fake_llm, key))["media"]
        assert "id" in image and report["url"] == "data:application/pdf;base64," + base64.b64encode(PDF).decode()
        _, info = await server.call("GET", public(key))
        assert [m["fileName"] for m in info["messages"][-1]["media"]] == ["chart.png"]
