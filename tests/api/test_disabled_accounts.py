"""M2 on the web side: disabling an account switches off its API keys, its public chat API and its
chat pages at once, without telling anonymous visitors why; re-enabling switches them back on."""

from __future__ import annotations

from botline.accounts import IssuedKey, create_account
from botline.app import STORE
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public


async def tenant(server: RunningServer) -> IssuedKey:
    assert server.app is not None
    return await create_account(server.app[STORE], name="Tenant")


async def set_disabled(server: RunningServer, account_id: str, disabled: bool) -> None:
    status, body = await server.call("PATCH", f"/api/v1/admin/accounts/{account_id}", json={"disabled": disabled})
    assert status == 200, body


async def page_status(server: RunningServer, access_key: str) -> tuple[int, str]:
    async with server.http.get(f"{server.url}/chat/{access_key}") as response:
        return response.status, await response.text()


async def test_m2_a_disabled_tenants_public_prompt_never_calls_the_model(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    """The review's reproduction: its API answered 403, while /prompt still called the model and
    the chat page still answered 200."""
    owner = await tenant(server)
    client_id = await create_client(server, fake_llm, key=owner.secret)
    status, session = await server.call("POST", f"/api/v1/web-chat-client/{client_id}/sessions", key=owner.secret)
    assert status == 200, session
    access_key = session["accessKey"]
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=owner.secret))[0] == 200  # key now cached
    assert (await page_status(server, access_key))[0] == 200

    await set_disabled(server, owner.record.account_id, True)
    status, body = await server.call("GET", "/api/v1/accounts/api-key", key=owner.secret)
    assert status == 403 and body["message"] == "This account is disabled."  # the cached key too, at once
    status, body = await server.call("POST", public(access_key, "/prompt"), json=prompt("hello?"))
    assert status == 403 and body == {"message": "This chat is unavailable."}
    assert fake_llm.requests == []
    status, page = await page_status(server, access_key)
    assert status == 403 and "unavailable" in page and "disabled" not in page
    for method, suffix in [("GET", ""), ("GET", "/transcript.json"), ("POST", "/reset"), ("DELETE", "")]:
        status, body = await server.call(method, public(access_key, suffix))
        assert status == 403 and body == {"message": "This chat is unavailable."}, (method, suffix)
    status, _ = await server.call("POST", "/api/v1/auth/login", json={"loginKey": owner.secret})
    assert status == 400

    await set_disabled(server, owner.record.account_id, False)
    status, answer = await server.call("POST", public(access_key, "/prompt"), json=prompt("hello?"))
    assert status == 200, answer
    assert len(fake_llm.requests) == 1
    assert (await page_status(server, access_key))[0] == 200
    assert (await server.call("GET", "/api/v1/accounts/api-key", key=owner.secret))[0] == 200


async def test_m2_other_accounts_keep_serving(server: RunningServer, fake_llm: FakeLLM) -> None:
    owner = await tenant(server)
    await set_disabled(server, owner.record.account_id, True)
    client_id = await create_client(server, fake_llm)  # the admin's own
    session = await open_session(server, client_id)
    status, answer = await server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("hi"))
    assert status == 200, answer
    assert (await page_status(server, session["accessKey"]))[0] == 200
