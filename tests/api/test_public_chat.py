"""The public chat API (seed "Web Chat Client"): what the chat page and a site's own scripts use."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from botline.domain.clock import FrozenClock
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.pdfs import minimal_pdf
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public, sse_events

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


async def chat(server: RunningServer, fake: FakeLLM, session_body: dict[str, Any] | None = None,
               **parameters: Any) -> str:
    client_id = await create_client(server, fake, **parameters)
    return str((await open_session(server, client_id, **(session_body or {})))["accessKey"])


async def read_events(response: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    return [event async for event in sse_events(response)]


async def test_session_info_has_the_seed_shape(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm, helloLabel="Welcome!", suggestionButtons=[{"label": "Hi", "prompt": "Hello"}],
                     inputModes=["Image", "Audio"], languageCode="pt-BR")
    await server.call("POST", public(key, "/prompt"), json=prompt("Olá"))
    status, info = await server.call("GET", public(key))
    assert status == 200
    assert [(m["role"], m["content"]) for m in info["messages"]] == [("user", "Olá"), ("assistant", "echo: Olá")]
    assert all(m["message_id"] for m in info["messages"])
    assert info["culture"]["sendButtonLabel"] == "Enviar" and info["culture"]["languageCode"] == "pt-BR"
    client = info["client"]
    assert client["helloLabel"] == "Welcome!" and client["primaryColor"] == "#6366f1"
    assert client["inputModes"] == ["Image", "Audio"] and client["suggestionButtons"][0]["prompt"] == "Hello"
    assert info["chatTitle"] == "Olá" and "chatCreationData" in info


async def test_an_edit_of_the_chat_client_reaches_open_chats_at_once(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, helloLabel="Before")
    key = str((await open_session(server, client_id))["accessKey"])
    _, info = await server.call("GET", public(key))  # the chat client's settings are cached from here
    assert info["client"]["helloLabel"] == "Before"
    assert (await server.call("POST", public(key, "/prompt"), json=prompt("one")))[0] == 200
    status, _ = await server.call("PUT", f"/api/v1/web-chat-client/{client_id}", json={
        "clientParameters": {"helloLabel": "After"}, "limitingParameters": {"messagesPerHour": 2}})  # "one" counted
    assert status == 200
    _, info = await server.call("GET", public(key))
    assert info["client"]["helloLabel"] == "After"
    assert (await server.call("POST", public(key, "/prompt"), json=prompt("two")))[0] == 200
    assert (await server.call("POST", public(key, "/prompt"), json=prompt("three")))[0] == 429


async def test_culture_follows_the_browser_when_the_client_sets_none(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm)
    _, info = await server.call("GET", public(key), headers={"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.8"})
    assert info["culture"]["sendButtonLabel"] == "Enviar"
    _, info = await server.call("GET", public(key), headers={"Accept-Language": "de-DE"})
    assert info["culture"]["sendButtonLabel"] == "Send"


async def test_prompt_answers_with_history_and_session_context(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm, {"tag": "customer-9", "extraContext": "The user is called Ana."},
                     gateway={"systemInstruction": "Be kind."})
    fake_llm.script(Reply(text="Hello Ana!", prompt_tokens=30, completion_tokens=4))
    status, answer = await server.call("POST", public(key, "/prompt"), json=prompt("Hi"))
    assert status == 200
    assert answer["completionText"] == "Hello Ana!" and answer["reasoning"] is None and answer["toolCalls"] == []
    assert answer["usage"] == {"promptTokens": 30, "completionTokens": 4, "totalTokens": 34}
    await server.call("POST", public(key, "/prompt"), json=prompt("And again"))
    second = fake_llm.requests[1].body
    system = second["messages"][0]["content"]
    assert system.startswith("Be kind.") and "The user is called Ana." in system
    assert [m["content"] for m in second["messages"][1:]] == ["Hi", "Hello Ana!", "And again"]
    assert second["user"] == "customer-9"


async def test_streaming_uses_the_exact_event_format(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm)
    fake_llm.script(Reply(text="one two three", chunk_delay=0.01))  # one delta event per upstream read
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("count")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
        events = await read_events(response)
    assert [name for name, _ in events] == ["delta", "delta", "delta", "done"]
    assert "".join(data["text"] for name, data in events if name == "delta") == "one two three"
    done = events[-1][1]
    assert done["completionText"] == "one two three" and done["messageId"] and done["usage"]["totalTokens"] > 0
    async with server.http.post(server.url + public(key, "/prompt"), json=prompt("again"),
                                headers={"Accept": "text/event-stream"}) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")


async def test_tool_events_only_when_show_tool_calls(server: RunningServer, fake_llm: FakeLLM) -> None:
    async with CallbackServer() as site:
        function = {"name": "lookup_order", "description": "Finds an order by number.",
                    "callbackUrl": site.answer("/order", Answer(body="shipped")),
                    "contentFormat": {"type": "object", "properties": {"number": {"type": "string"}}}}
        for show, expected in ((True, ["tool", "tool", "delta", "done"]), (False, ["delta", "done"])):
            key = await chat(server, fake_llm, gateway={"protocolFunctions": [function]}, showToolCalls=show)
            fake_llm.script(Reply(tool_calls=[ToolCall("lookup_order", {"number": "42"})]), Reply(text="Shipped."))
            async with server.http.post(server.url + public(key, "/prompt?stream=true"),
                                        json=prompt("Where is 42?")) as response:
                events = await read_events(response)
            assert [name for name, _ in events] == expected
            if show:
                assert events[0][1] == {"name": "lookup_order", "status": "started"}
                assert events[1][1] == {"name": "lookup_order", "status": "finished"}
        [first, _] = site.received_at("/order")
        context = first.json()["context"]
        assert context["callSource"] == "WebChatClient" and context["conversationToken"]


async def test_tool_events_carry_the_models_reason_with_tool_invocation_explanations(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    async with CallbackServer() as site:
        function = {"name": "lookup_order", "description": "Finds an order by number.",
                    "callbackUrl": site.answer("/order", Answer(body="shipped")),
                    "contentFormat": {"type": "object", "properties": {"number": {"type": "string"}},
                                      "required": ["number"], "additionalProperties": False}}
        key = await chat(server, fake_llm, gateway={"protocolFunctions": [function],
                                                    "toolInvocationExplanations": True}, showToolCalls=True)
        fake_llm.script(Reply(tool_calls=[ToolCall("lookup_order", {
            "number": "42", "invocation_explanation": "To find\norder 42."})]), Reply(text="Shipped."))
        async with server.http.post(server.url + public(key, "/prompt?stream=true"),
                                    json=prompt("Where is 42?")) as response:
            events = await read_events(response)
        assert events[0][1] == {"name": "lookup_order", "status": "started", "explanation": "To find order 42."}
        assert events[1][1]["explanation"] == "To find order 42."
        [called] = site.received_at("/order")
        assert called.json()["function"]["content"] == {"number": "42"}  # the tool never sees the reason
    [spec] = fake_llm.requests[0].body["tools"]
    parameters = spec["function"]["parameters"]
    assert parameters["required"] == ["invocation_explanation", "number"]
    assert parameters["properties"]["invocation_explanation"]["type"] == "string"


async def test_cancel_keeps_the_partial_answer_and_cancels_upstream(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm)
    fake_llm.script(Reply(text=" ".join(f"w{n}" for n in range(300)), chunk_delay=0.01))
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("long")) as response:
        await response.content.readline()  # the first delta is on its way
        status, body = await server.call("DELETE", public(key))
        assert status == 200 and body == {"message": "Inference cancelled."}
        events = await read_events(response)
    assert events[-1][0] == "done" and events[-1][1]["cancelled"] is True
    await fake_llm.wait_for_cancelled(1)
    _, info = await server.call("GET", public(key))
    last = info["messages"][-1]
    assert last["role"] == "assistant" and last["status"] == "cancelled"
    assert last["content"].startswith("w0") and len(last["content"].split()) < 300


async def test_the_turn_finishes_and_is_stored_when_the_page_goes_away(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await chat(server, fake_llm)
    fake_llm.script(Reply(text="a complete answer", delay=0.3))
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("q")))
        await fake_llm.wait_for_requests(1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    for _ in range(50):  # the turn runs on without the page: bounded wait for it to be stored
        _, info = await server.call("GET", public(key))
        if len(info["messages"]) == 2:
            break
        await asyncio.sleep(0.05)
    assert info["messages"][-1]["content"] == "a complete answer"
    assert fake_llm.cancelled == 0


async def test_retry_removes_the_answer_and_the_same_prompt_is_answered_once(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await chat(server, fake_llm)
    assert (await server.call("POST", public(key, "/retry")))[0] == 400
    fake_llm.script(Reply(text="first try"), Reply(text="second try"))
    await server.call("POST", public(key, "/prompt"), json=prompt("question"))
    status, _ = await server.call("POST", public(key, "/retry"))
    assert status == 204
    _, info = await server.call("GET", public(key))
    assert [m["content"] for m in info["messages"]] == ["question"]
    _, answer = await server.call("POST", public(key, "/prompt"), json=prompt("question"))
    assert answer["completionText"] == "second try"
    _, info = await server.call("GET", public(key))
    assert [m["content"] for m in info["messages"]] == ["question", "second try"]
    assert [m["content"] for m in fake_llm.requests[1].body["messages"][1:]] == ["question"]


async def test_reset_empties_the_conversation_and_keeps_the_session(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm)
    await server.call("POST", public(key, "/prompt"), json=prompt("hello"))
    assert (await server.call("POST", public(key, "/reset")))[0] == 204
    status, info = await server.call("GET", public(key))
    assert status == 200 and info["messages"] == []


async def test_l5_transcript_keeps_the_seed_shape_without_the_tenants_context(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    """extraContext and metadata are what the site's backend told botline about the person (a plan, a
    segment, notes): the person downloading their conversation does not get them."""
    key = await chat(server, fake_llm, {"extraContext": "VIP, churn risk", "metadata": {"plan": "gold"}})
    await server.call("POST", public(key, "/prompt"), json=prompt("hello"))
    async with server.http.get(server.url + public(key, "/transcript.json")) as response:
        assert response.status == 200
        assert response.headers["Content-Disposition"].startswith("attachment;")
        body = await response.json()
    assert body["messages"] == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "echo: hello"}]
    assert body["context"] is None and body["metadata"] == {} and body["sessionId"]
    assert "churn risk" not in str(body) and "gold" not in str(body)


class TestLimits:
    async def test_messages_per_hour_answers_429_with_retry_after(
        self, server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock
    ) -> None:
        key = await chat(server, fake_llm, {"expires": 7200}, limitingParameters={"messagesPerHour": 2})
        for _ in range(2):
            assert (await server.call("POST", public(key, "/prompt"), json=prompt("hi")))[0] == 200
        async with server.http.post(server.url + public(key, "/prompt"), json=prompt("hi")) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) > 0
            assert "2 messages per hour" in (await response.json())["message"]
        clock.advance(timedelta(hours=1))
        assert (await server.call("POST", public(key, "/prompt"), json=prompt("hi")))[0] == 200

    async def test_max_messages_blocks_the_chat_without_trimming(self, server: RunningServer,
                                                                 fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, limitingParameters={"maxMessages": 2})
        assert (await server.call("POST", public(key, "/prompt"), json=prompt("one")))[0] == 200
        status, body = await server.call("POST", public(key, "/prompt"), json=prompt("two"))
        assert status == 403 and "limit of 2 messages" in body["message"]
        _, info = await server.call("GET", public(key))
        assert len(info["messages"]) == 2

    async def test_no_gateway_is_a_422_saying_no_model_is_configured(self, server: RunningServer) -> None:
        client_id = await create_client(server, None)
        key = (await open_session(server, client_id))["accessKey"]
        status, body = await server.call("POST", public(key, "/prompt"), json=prompt("hi"))
        assert status == 422 and "No AI model is configured" in body["message"]
        _, info = await server.call("GET", public(key))
        assert info["messages"] == []

    async def test_expired_sessions_answer_404_and_are_purged(
        self, server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock
    ) -> None:
        from botline.api.state import SERVICES

        key = await chat(server, fake_llm, {"expires": 600})
        clock.advance(timedelta(seconds=601))
        for method, suffix in (("GET", ""), ("POST", "/prompt"), ("GET", "/transcript.json")):
            status, body = await server.call(method, public(key, suffix), json=prompt("hi"))
            assert status == 404 and "expired" in body["message"]
        assert server.app is not None
        assert await server.app[SERVICES].sessions.purge_once() == 1

    async def test_a_user_message_near_expiry_extends_the_session(
        self, server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock
    ) -> None:
        key = await chat(server, fake_llm, {"expires": 600})
        clock.advance(timedelta(minutes=9))
        await server.call("POST", public(key, "/prompt"), json=prompt("still here"))
        _, info = await server.call("GET", public(key))
        assert info["expiresAt"] == (clock.now() + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
        clock.advance(timedelta(minutes=25))
        assert (await server.call("GET", public(key)))[0] == 200

    async def test_bad_prompts_are_400(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm)
        for body in ({}, {"prompt": {"role": "assistant", "content": "x"}}, prompt(""), prompt("x" * 40000),
                     prompt([{"type": "video", "url": "x"}]), prompt([]),
                     prompt([{"type": "text", "text": "y" * 40000}])):
            status, answer = await server.call("POST", public(key, "/prompt"), json=body)
            assert status == 400 and answer["message"], body
        assert fake_llm.requests == []


async def test_two_prompts_on_one_session_never_interleave(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await chat(server, fake_llm)
    fake_llm.script(Reply(text="first answer", delay=0.3), Reply(text="second answer"))
    first = asyncio.create_task(server.call("POST", public(key, "/prompt"), json=prompt("first")))
    await fake_llm.wait_for_requests(1)
    second = asyncio.create_task(server.call("POST", public(key, "/prompt"), json=prompt("second")))
    await asyncio.gather(first, second)
    second_request = [m["content"] for m in fake_llm.requests[1].body["messages"][1:]]
    assert second_request == ["first", "first answer", "second"]


async def test_one_access_key_never_reads_another_session(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm)
    alice = (await open_session(server, client_id, tag="alice"))["accessKey"]
    bob = (await open_session(server, client_id, tag="bob"))["accessKey"]
    await server.call("POST", public(alice, "/prompt"), json=prompt("alice secret"))
    _, info = await server.call("GET", public(bob))
    assert info["messages"] == []
    await server.call("POST", public(bob, "/prompt"), json=prompt("bob"))
    bob_request = fake_llm.requests[-1].body["messages"]
    assert all("alice secret" not in str(m["content"]) for m in bob_request)


class TestAttachments:
    PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()

    async def test_an_image_reaches_the_model_as_an_image_part(self, server: RunningServer,
                                                               fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, inputModes=["Image"])
        content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": self.PNG}}]
        assert (await server.call("POST", public(key, "/prompt"), json=prompt(content)))[0] == 200
        sent = fake_llm.requests[0].body["messages"][-1]["content"]
        assert sent[1] == {"type": "image_url", "image_url": {"url": self.PNG}}

    async def test_uploads_need_their_input_mode(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, inputModes=[])
        content = [{"type": "image_url", "image_url": {"url": self.PNG}}]
        status, body = await server.call("POST", public(key, "/prompt"), json=prompt(content))
        assert status == 415 and "image" in body["message"]
        assert fake_llm.requests == []

    async def test_a_document_becomes_text_with_a_note(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, inputModes=["Document"])
        data = "data:text/markdown;base64," + base64.b64encode(b"# Menu\n- soup").decode()
        content = [{"type": "text", "text": "Summarise"},
                   {"type": "file", "file": {"filename": "menu.md", "file_data": data}}]
        assert (await server.call("POST", public(key, "/prompt"), json=prompt(content)))[0] == 200
        text = fake_llm.requests[0].body["messages"][-1]["content"][1]["text"]
        assert text.startswith("[Attachment: menu.md (text/markdown") and "# Menu\n- soup" in text

    async def test_a_pdf_is_read(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, inputModes=["Document"])
        data = "data:application/pdf;base64," + base64.b64encode(minimal_pdf("Invoice 1234")).decode()
        content = [{"type": "file", "file": {"filename": "invoice.pdf", "file_data": data}}]
        assert (await server.call("POST", public(key, "/prompt"), json=prompt(content)))[0] == 200
        assert "Invoice 1234" in fake_llm.requests[0].body["messages"][-1]["content"][0]["text"]

    async def test_unsupported_files_are_refused_unless_allowed(self, server: RunningServer,
                                                                fake_llm: FakeLLM) -> None:
        data = "data:application/zip;base64," + base64.b64encode(b"PK\x03\x04").decode()
        content = [{"type": "file", "file": {"filename": "a.zip", "file_data": data}}]
        key = await chat(server, fake_llm, inputModes=["Document"])
        assert (await server.call("POST", public(key, "/prompt"), json=prompt(content)))[0] == 415
        key = await chat(server, fake_llm, inputModes=["Document"], uploadUnsupportedFiles=True)
        assert (await server.call("POST", public(key, "/prompt"), json=prompt(content)))[0] == 200
        assert "its content cannot be read" in fake_llm.requests[-1].body["messages"][-1]["content"][0]["text"]

    async def test_audio_is_transcribed_through_the_gateway(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, inputModes=["Audio"])
        fake_llm.script(Reply(text="book a table for two"), Reply(text="Booked."))
        audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(),
                                                        "format": "wav"}}
        status, answer = await server.call("POST", public(key, "/prompt"), json=prompt([audio]))
        assert status == 200 and answer["completionText"] == "Booked."
        assert fake_llm.requests[0].path.endswith("/audio/transcriptions")
        assert "book a table for two" in fake_llm.requests[1].body["messages"][-1]["content"][0]["text"]

    async def test_an_oversized_upload_is_413(self, server: RunningServer, fake_llm: FakeLLM) -> None:
        key = await chat(server, fake_llm, inputModes=["Image"])
        huge = "data:image/png;base64," + "A" * (14 * 1024 * 1024)  # 10.5 MB decoded, over the 10 MB cap
        status, _ = await server.call("POST", public(key, "/prompt"),
                                      json=prompt([{"type": "image_url", "image_url": {"url": huge}}]))
        assert status == 413
