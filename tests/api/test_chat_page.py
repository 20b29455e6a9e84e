"""The chat page's headers and where customScripts may run (review findings L1 and L2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botline.accounts import admin_account
from botline.api.state import SERVICES, Services
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer, free_port, make_settings, running_server
from tests.support.webchat import client_body, create_client, open_session

SCRIPT = "window.tenantScriptRan = true;"
CHAT_HOST = "chat.acme.example"


def services(server: RunningServer) -> Services:
    assert server.app is not None
    return server.app[SERVICES]


async def page(server: RunningServer, talk_url: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
    path = talk_url[talk_url.index("/chat/"):]
    headers = {"Host": host} if host else {}
    async with server.http.get(server.url + path, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


async def test_l1_the_page_may_load_images_and_connect_only_to_itself(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, logoImageUrl="https://cdn.acme.example:8443/logo.png")
    _, headers, _ = await page(server, (await open_session(server, client_id))["talkUrl"])
    policy = [part.strip() for part in headers["Content-Security-Policy"].split(";")]
    assert "img-src 'self' data: https://cdn.acme.example:8443" in policy  # the logo's origin, nothing else
    assert "connect-src 'self'" in policy and "media-src 'self' data:" in policy
    assert "object-src 'none'" in policy and "base-uri 'none'" in policy


async def test_l1_a_logo_url_cannot_write_into_the_policy(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, logoImageUrl="https://a.example;img-src *;/logo.png")
    _, headers, _ = await page(server, (await open_session(server, client_id))["talkUrl"])
    assert "img-src 'self' data:;" in headers["Content-Security-Policy"] + ";"
    assert "*;" not in headers["Content-Security-Policy"].replace("frame-ancestors *", "")


async def test_l2_custom_scripts_are_refused_without_a_chat_origin(server: RunningServer, fake_llm: FakeLLM) -> None:
    status, body = await server.call("POST", "/api/v1/web-chat-client", json=client_body(None, customScripts=SCRIPT))
    assert status == 400
    assert "customScripts" in body["message"] and "webchat.chat_origin" in body["message"]
    client_id = await create_client(server, fake_llm, customStyles=".x { color: red }")
    status, body = await server.call("PUT", f"/api/v1/web-chat-client/{client_id}",
                                     json={"clientParameters": {"customScripts": SCRIPT}})
    assert status == 400 and "customScripts" in body["message"]
    _, view = await server.call("GET", f"/api/v1/web-chat-client/{client_id}")
    assert view["clientParameters"]["customScripts"] is None  # nothing half-written


async def test_l2_stored_custom_scripts_are_left_out_without_a_chat_origin(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    """A client saved before the rule (or while a chat origin was configured) still shows its page,
    without the script, and other edits to it still work."""
    client_id = await create_client(server, fake_llm, helloLabel="Hi")
    store = services(server).store
    client = await store.chat_clients.get((await admin_account(store)).id, client_id)
    assert client is not None
    client.client_parameters.custom_scripts = SCRIPT
    await store.chat_clients.update(client)

    status, _, html = await page(server, (await open_session(server, client_id))["talkUrl"])
    assert status == 200 and SCRIPT not in html and "botline-custom-scripts" in html
    assert (await server.call("PUT", f"/api/v1/web-chat-client/{client_id}",
                              json={"clientParameters": {"helloLabel": "Hello"}}))[0] == 200


async def test_l2_with_a_chat_origin_scripts_run_only_there(tmp_path: Path, fake_llm: FakeLLM) -> None:
    port = free_port()
    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}",
                             webchat={"chat_origin": f"https://{CHAT_HOST}/"})
    async with running_server(settings, port=port) as server:
        client_id = await create_client(server, fake_llm, customScripts=SCRIPT)
        session: dict[str, Any] = await open_session(server, client_id)
        assert session["talkUrl"] == f"https://{CHAT_HOST}/chat/{session['accessKey']}"

        status, _, html = await page(server, session["talkUrl"], host=CHAT_HOST)
        assert status == 200 and SCRIPT in html
        status, _, html = await page(server, session["talkUrl"])  # the API's own host
        assert status == 200 and SCRIPT not in html
