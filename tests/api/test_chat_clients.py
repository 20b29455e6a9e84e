"""Chat client and session management (seed "Web Chat" and "Web Chat Sessions")."""

from __future__ import annotations

from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer
from tests.support.webchat import client_body, create_client, open_session, prompt, public


async def test_create_view_and_list_a_client(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(
        server, fake_llm, helloLabel="Hi!", suggestionButtons=[{"label": "Prices", "prompt": "What are prices?"}],
        messageDebounceInterval=5, maxScheduledIgnoredZone="1.02:00:00", inputModes=["Image"],
        limitingParameters={"messagesPerHour": 30, "maxMessages": 100},
    )
    status, view = await server.call("GET", f"/api/v1/web-chat-client/{client_id}")
    assert status == 200
    assert view["name"] == "Website" and view["aiGateway"]["name"] == "Support bot"
    assert view["limitingParameters"] == {"messagesPerHour": 30, "maxMessages": 100}
    params = view["clientParameters"]
    assert params["messageDebounceInterval"] == "00:00:05"
    assert params["maxScheduledIgnoredZone"] == "1.02:00:00"
    assert params["suggestionButtons"] == [{"label": "Prices", "prompt": "What are prices?"}]
    assert params["inputModes"] == ["Image"] and params["allowScheduledContinuations"] is False
    await open_session(server, client_id)
    status, listed = await server.call("GET", "/api/v1/web-chat-client")
    assert status == 200
    [item] = listed
    assert item["id"] == client_id and item["color"] == "#6366f1" and item["activeSessions"] == 1
    assert item["associatedGateway"]["modelName"] == "fake-model"


async def test_put_merges_parameters_shallowly_and_replaces_arrays(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(
        server, fake_llm, helloLabel="Hi!",
        suggestionButtons=[{"label": "A", "prompt": "a"}, {"label": "B", "prompt": "b"}],
        limitingParameters={"messagesPerHour": 30, "maxMessages": 100},
    )
    status, _ = await server.call("PUT", f"/api/v1/web-chat-client/{client_id}", json={
        "clientParameters": {"pageTitle": "New title", "suggestionButtons": [{"label": "C", "prompt": "c"}]},
        "limitingParameters": {"maxMessages": 10},
    })
    assert status == 200
    _, view = await server.call("GET", f"/api/v1/web-chat-client/{client_id}")
    params = view["clientParameters"]
    assert params["pageTitle"] == "New title" and params["helloLabel"] == "Hi!"
    assert params["suggestionButtons"] == [{"label": "C", "prompt": "c"}]
    assert view["limitingParameters"] == {"messagesPerHour": 30, "maxMessages": 10}


async def test_validation_errors_name_the_field(server: RunningServer, fake_llm: FakeLLM) -> None:
    cases = [
        ({"primaryColor": "not a colour!"}, "primaryColor"),
        ({"pageTitle": ""}, "pageTitle"),
        ({"allowedFrameOrigins": ["https://site.example/path"]}, "allowedFrameOrigins"),
        ({"messageDebounceInterval": "soon"}, "messageDebounceInterval"),
        ({"inputModes": ["Video"]}, "inputModes"),
    ]
    for parameters, field in cases:
        status, body = await server.call("POST", "/api/v1/web-chat-client", json=client_body(None, **parameters))
        assert status == 400 and field in body["message"], (parameters, body)
    body = client_body(None)
    del body["clientParameters"]["primaryColor"]
    status, answer = await server.call("POST", "/api/v1/web-chat-client", json=body)
    assert status == 400 and "primaryColor" in answer["message"]
    status, answer = await server.call("POST", "/api/v1/web-chat-client", json=client_body("no-such-gateway"))
    assert status == 400 and "aiGatewayId" in answer["message"]


async def test_a_tag_returns_the_same_live_session_renewed_with_new_context(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    client_id = await create_client(server, fake_llm)
    first = await open_session(server, client_id, tag="user-7", extraContext="plan: free", expires=600)
    second = await open_session(server, client_id, tag="user-7", extraContext="plan: pro", expires=7200,
                                metadata={"page": "/pricing"})
    assert second["sessionId"] == first["sessionId"] and second["accessKey"] == first["accessKey"]
    assert first["talkUrl"] == f"{server.url}/chat/{first['accessKey']}"
    other = await open_session(server, client_id, tag="user-8")
    assert other["sessionId"] != first["sessionId"]
    standalone = await open_session(server, client_id)
    assert standalone["sessionId"] not in (first["sessionId"], other["sessionId"])
    _, listed = await server.call("GET", f"/api/v1/web-chat-client/{client_id}/sessions?filter=user-7")
    [item] = listed
    assert item["tagName"] == "user-7" and item["contextPreview"] == "plan: pro"
    assert len(first["accessKey"]) >= 22


async def test_session_expiry_bounds_are_enforced(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm)
    for expires in (599, 90 * 24 * 3600 + 1, "soon"):
        status, body = await server.call("POST", f"/api/v1/web-chat-client/{client_id}/sessions",
                                         json={"expires": expires})
        assert status == 400 and "expires" in body["message"]
    status, body = await server.call("POST", f"/api/v1/web-chat-client/{client_id}/sessions",
                                     json={"contextLocation": "file:///etc/passwd"})
    assert status == 400 and "contextLocation" in body["message"]


async def test_session_list_counts_messages_and_tokens(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm)
    session = await open_session(server, client_id, tag="t")
    await server.call("POST", public(session["accessKey"], "/prompt"), json=prompt("hello"))
    _, [item] = await server.call("GET", f"/api/v1/web-chat-client/{client_id}/sessions")
    assert item["messageCount"] == 2 and item["tokenCount"] > 0 and item["lastMessage"] is not None


async def test_deleting_a_session_ends_its_public_access(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm)
    session = await open_session(server, client_id)
    status, _ = await server.call("DELETE", f"/api/v1/web-chat-client/{client_id}/sessions/{session['sessionId']}")
    assert status == 200
    status, body = await server.call("GET", public(session["accessKey"]))
    assert status == 404 and "expired" in body["message"]
    status, _ = await server.call("DELETE", f"/api/v1/web-chat-client/{client_id}/sessions/{session['sessionId']}")
    assert status == 404


async def test_deleting_a_client_deletes_its_sessions(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm)
    session = await open_session(server, client_id)
    status, _ = await server.call("DELETE", f"/api/v1/web-chat-client/{client_id}")
    assert status == 200
    assert (await server.call("GET", public(session["accessKey"])))[0] == 404
    assert (await server.call("GET", f"/api/v1/web-chat-client/{client_id}"))[0] == 404


async def test_another_account_sees_nothing(server: RunningServer, fake_llm: FakeLLM) -> None:
    from botline.accounts import create_account
    from botline.app import STORE

    assert server.app is not None
    other = await create_account(server.app[STORE], name="Other")
    client_id = await create_client(server, fake_llm)
    session = await open_session(server, client_id)
    for method, path in [
        ("GET", f"/api/v1/web-chat-client/{client_id}"), ("PUT", f"/api/v1/web-chat-client/{client_id}"),
        ("DELETE", f"/api/v1/web-chat-client/{client_id}"), ("GET", f"/api/v1/web-chat-client/{client_id}/sessions"),
        ("POST", f"/api/v1/web-chat-client/{client_id}/sessions"),
        ("DELETE", f"/api/v1/web-chat-client/{client_id}/sessions/{session['sessionId']}"),
    ]:
        status, _ = await server.call(method, path, key=other.secret, json={})
        assert status == 404, (method, path)
    assert (await server.call("GET", "/api/v1/web-chat-client", key=other.secret))[1] == []
