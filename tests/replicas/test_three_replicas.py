"""Three `botline serve` processes on one Redis behave like one process.

Requests are spread across the replicas: webhook re-deliveries, debounce bursts, per-session
ordering, rate limits, schedule claims, stopping a turn, and edits through the management API all
hold globally. The processes start once for the module; every test uses its own chat or client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.emulators.telegram import TelegramEmulator
from tests.support.processes import botline_process
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import ADMIN_KEY
from tests.support.webchat import client_body, prompt, public, sse_events

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPLICAS = 3
WAIT = 15.0
"""Generous bound on waits: a loaded 2-core machine runs three servers here."""
QUIET_SECONDS = 1.0
"""How long "nothing more arrives" is watched for."""
CACHE_SECONDS = 600
"""Key and gateway caches that never expire during the module: only an eviction signal explains
another replica seeing a change."""
MESSAGES_PER_HOUR = 3
LOGIN_ATTEMPTS = 3


@dataclass
class Cluster:
    urls: list[str]
    http: aiohttp.ClientSession
    """Sends the admin key."""
    fake: FakeLLM
    telegram: TelegramEmulator
    gateway_id: str
    webhook_path: str

    async def call(self, replica: int, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.urls[replica % REPLICAS] + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def push(self, replica: int, update: Mapping[str, Any]) -> int:
        """Telegram delivering `update` to one replica's webhook."""
        assert self.telegram.webhook is not None and self.telegram.webhook.secret_token
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.telegram.webhook.secret_token}
        async with self.http.post(self.urls[replica] + self.webhook_path, json=update, headers=headers) as response:
            return response.status

    async def session(self, *, gateway_id: str | None = None, **limits: Any) -> str:
        """A new web-chat client (on the main gateway unless told) with one session; its access key."""
        body = client_body(gateway_id or self.gateway_id, limitingParameters=limits)
        status, client = await self.call(0, "POST", "/api/v1/web-chat-client", json=body)
        assert status == 200, client
        status, session = await self.call(1, "POST", f"/api/v1/web-chat-client/{client['id']}/sessions", json={})
        assert status == 200, session
        return str(session["accessKey"])


def config_text(redis_url: str, prefix: str, fake: FakeLLM, telegram: TelegramEmulator) -> str:
    return (
        f"storage:\n  url: {redis_url}\n  redis_prefix: {prefix}\n"
        f"auth:\n  admin_keys: [{ADMIN_KEY}]\n  key_cache_seconds: {CACHE_SECONDS}\n"
        f"  login_attempts_per_minute: {LOGIN_ATTEMPTS}\n"
        f"llm:\n  gateway_cache_seconds: {CACHE_SECONDS}\n"
        f"providers:\n  telegram:\n    api_url: {telegram.url}\n    mode: webhook\n"
        "scheduler:\n  min_delay_seconds: 1\n  sync_interval_seconds: 0.3\n"
        f"gateways:\n  - name: main\n    parameters:\n      baseAddress: {fake.base_url}\n"
        f"      apiKey: {UPSTREAM_KEY}\n      modelName: fake-model\n"
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> AsyncIterator[Cluster]:
    prefix = unique_prefix()
    config = tmp_path_factory.mktemp("replicas") / "config.yaml"
    try:
        async with AsyncExitStack() as stack:
            fake = await stack.enter_async_context(FakeLLM(api_key=UPSTREAM_KEY))
            telegram = await stack.enter_async_context(TelegramEmulator(time_scale=0.01))
            config.write_text(config_text(redis_url, prefix, fake, telegram))
            # Started together, as an orchestrator does: start-up writes (admin key, declared gateway) must not race.
            processes = await asyncio.gather(*(stack.enter_async_context(botline_process(config))
                                               for _ in range(REPLICAS)))
            http = await stack.enter_async_context(
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}))
            cluster = Cluster([p.url for p in processes], http, fake, telegram, "", "")
            status, models = await cluster.call(0, "GET", "/v1/models")
            assert status == 200, models
            cluster.gateway_id = models["data"][0]["id"]
            cluster.webhook_path = await telegram_client(cluster)
            yield cluster
            for process in processes:  # all stop together; each exit below then waits for its own
                process.process.terminate()
    finally:
        await delete_prefix(redis_url, prefix)


async def telegram_client(cluster: Cluster) -> str:
    """A chat client answering on Telegram (1 s debounce, scheduled continuations on); its webhook path."""
    body = client_body(cluster.gateway_id, messageDebounceInterval="00:00:01", allowScheduledContinuations=True)
    status, client = await cluster.call(1, "POST", "/api/v1/web-chat-client", json=body)
    assert status == 200, client
    integration = {"integrationType": "Telegram",
                   "integrations": {"telegramIntegration": {"botToken": cluster.telegram.token}}}
    status, saved = await cluster.call(2, "PUT", f"/api/v1/web-chat-client/{client['id']}/integrations",
                                       json=integration)
    assert status == 200, saved
    return urlparse(saved["webhookUrl"]).path


async def no_more_messages(cluster: Cluster, chat: int, count: int) -> None:
    with pytest.raises(TimeoutError):
        await cluster.telegram.wait_for_messages(count + 1, timeout=QUIET_SECONDS, chat_id=chat)


def last_user_text(request_body: dict[str, Any]) -> str:
    return str([m for m in request_body["messages"] if m["role"] == "user"][-1]["content"])


async def test_a_webhook_delivered_to_every_replica_is_answered_once(cluster: Cluster) -> None:
    chat = 1001
    update = cluster.telegram.text_update(chat, "hello from everywhere")
    assert await asyncio.gather(*(cluster.push(i, update) for i in range(REPLICAS))) == [200] * REPLICAS
    [reply] = await cluster.telegram.wait_for_messages(1, timeout=WAIT, chat_id=chat)
    assert reply["text"] == "echo: hello from everywhere"
    await no_more_messages(cluster, chat, 1)


async def test_a_burst_spread_across_replicas_is_one_turn(cluster: Cluster) -> None:
    chat = 1002
    before = len(cluster.fake.requests)
    for replica, text in enumerate(("hi", "I need help", "with my order")):
        assert await cluster.push(replica, cluster.telegram.text_update(chat, text)) == 200
    await cluster.telegram.wait_for_messages(1, timeout=WAIT, chat_id=chat)
    await no_more_messages(cluster, chat, 1)
    [turn] = cluster.fake.requests[before:]
    assert last_user_text(turn.body) == "hi\nI need help\nwith my order"


async def test_each_scheduled_activation_is_delivered_once(cluster: Cluster) -> None:
    chat = 1003
    cluster.fake.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 1, "reason": "follow up"})]),
        Reply(text="Will do."), Reply(text="Following up, as promised."),
    )  # a second activation would be answered with an echo, and show up as a third message
    assert await cluster.push(1, cluster.telegram.text_update(chat, "follow up with me")) == 200
    messages = await cluster.telegram.wait_for_messages(2, timeout=WAIT, chat_id=chat)
    assert [m["text"] for m in messages] == ["Will do.", "Following up, as promised."]
    await no_more_messages(cluster, chat, 2)


async def test_one_session_is_never_answered_concurrently(cluster: Cluster) -> None:
    access_key = await cluster.session()
    cluster.fake.script(*(Reply(text=f"answer {n}", delay=0.3) for n in range(REPLICAS)))
    cluster.fake.max_in_flight = 0
    answers = await asyncio.gather(*(
        cluster.call(replica, "POST", public(access_key, "/prompt"), json=prompt(f"question {replica}"))
        for replica in range(REPLICAS)))
    assert [status for status, _ in answers] == [200] * REPLICAS
    assert cluster.fake.max_in_flight == 1
    # Each turn saw every earlier answer: they ran one after the other, whichever replica took them.
    turns = cluster.fake.requests[-REPLICAS:]
    assert [sum(m["role"] == "assistant" for m in t.body["messages"]) for t in turns] == [0, 1, 2]
    status, session = await cluster.call(2, "GET", public(access_key))
    assert status == 200, session
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"] * REPLICAS


async def test_messages_per_hour_hold_across_replicas(cluster: Cluster) -> None:
    access_key = await cluster.session(messagesPerHour=MESSAGES_PER_HOUR)
    for n in range(MESSAGES_PER_HOUR):
        status, body = await cluster.call(n, "POST", public(access_key, "/prompt"), json=prompt(f"message {n}"))
        assert status == 200, body
    for replica in range(REPLICAS):
        status, body = await cluster.call(replica, "POST", public(access_key, "/prompt"), json=prompt("one more"))
        assert status == 429, body
        assert body["message"] == f"This chat allows {MESSAGES_PER_HOUR} messages per hour; try again later."


async def test_login_attempts_are_limited_across_replicas(cluster: Cluster) -> None:
    wrong = {"loginKey": "not-a-key"}
    statuses = [(await cluster.call(n, "POST", "/api/v1/auth/login", json=wrong))[0] for n in range(LOGIN_ATTEMPTS)]
    assert statuses == [400] * LOGIN_ATTEMPTS
    for replica in range(REPLICAS):
        status, body = await cluster.call(replica, "POST", "/api/v1/auth/login", json={"loginKey": ADMIN_KEY})
        assert status == 429, body


async def test_a_stop_sent_to_another_replica_stops_the_turn(cluster: Cluster) -> None:
    access_key = await cluster.session()
    full_answer = "word " * 200
    cluster.fake.script(Reply(text=full_answer, chunk_delay=0.05))  # ten seconds if nobody stops it
    cancelled_upstream = cluster.fake.cancelled
    url = cluster.urls[0] + public(access_key, "/prompt?stream=true")
    async with cluster.http.post(url, json=prompt("tell me a long story")) as stream:
        events = sse_events(stream)
        assert (await anext(events))[0] == "delta"
        status, body = await cluster.call(1, "DELETE", public(access_key))
        assert (status, body) == (200, {"message": "Inference cancelled."})
        # The stopped answer is stored by the time the stop is answered: any replica shows it at once.
        status, session = await cluster.call(2, "GET", public(access_key))
        assert status == 200, session
        last = session["messages"][-1]
        assert (last["role"], last["status"]) == ("assistant", "cancelled")
        assert last["content"].startswith("word") and len(last["content"]) < len(full_answer)
        rest = [event async for event in events]
    assert rest[-1][0] == "done" and rest[-1][1]["cancelled"] is True
    await cluster.fake.wait_for_cancelled(cancelled_upstream + 1, timeout=WAIT)


async def test_a_gateway_edited_on_one_replica_is_used_at_once_by_another(cluster: Cluster) -> None:
    gateway = {"name": "Editable", "parameters": {"baseAddress": cluster.fake.base_url, "apiKey": UPSTREAM_KEY,
                                                  "modelName": "model-before"}}
    status, created = await cluster.call(0, "POST", "/api/v1/ai-gateways", json=gateway)
    assert status == 200, created
    access_key = await cluster.session(gateway_id=created["aiGatewayId"])
    assert (await cluster.call(1, "POST", public(access_key, "/prompt"), json=prompt("first")))[0] == 200
    assert cluster.fake.requests[-1].body["model"] == "model-before"  # replica 1 has the gateway cached now
    edit = {"parameters": {"modelName": "model-after"}}
    status, body = await cluster.call(0, "PATCH", f"/api/v1/ai-gateways/{created['aiGatewayId']}", json=edit)
    assert status == 200, body
    assert (await cluster.call(1, "POST", public(access_key, "/prompt"), json=prompt("second")))[0] == 200
    assert cluster.fake.requests[-1].body["model"] == "model-after"


async def test_a_policy_edited_on_one_replica_is_enforced_at_once_by_another(cluster: Cluster) -> None:
    clean = Reply(text='{"violations": []}')
    broken = Reply(text='{"violations": [{"rule": 1, "explanation": "It names an internal code."}]}')
    gateway = {"name": "Policed", "parameters": {"baseAddress": cluster.fake.base_url, "apiKey": UPSTREAM_KEY,
                                                 "modelName": "fake-model"}}
    status, created = await cluster.call(0, "POST", "/api/v1/ai-gateways", json=gateway)
    assert status == 200, created
    rule = {"name": "Codes", "content": "Never reveal internal discount codes.", "riskType": "HIGH",
            "actionType": 0, "aiGatewayId": created["aiGatewayId"]}
    status, policy = await cluster.call(0, "POST", "/api/v1/policy", json=rule)
    assert status == 200, policy
    ask = {"model": created["aiGatewayId"], "messages": [{"role": "user", "content": "code SAVE50"}]}
    cluster.fake.script_judge(clean, broken)
    status, body = await cluster.call(1, "POST", "/v1/chat/completions", json=ask)  # replica 1 caches the rule
    assert status == 200 and body["choices"][0]["finish_reason"] != "content_filter", body
    status, body = await cluster.call(0, "PUT", f"/api/v1/policy/{policy['policy']['id']}", json={"actionType": 2})
    assert status == 200, body
    cluster.fake.script_judge(clean, broken)
    status, body = await cluster.call(1, "POST", "/v1/chat/completions", json=ask)
    assert status == 200 and body["choices"][0]["finish_reason"] == "content_filter", body
    assert "SAVE50" not in body["choices"][0]["message"]["content"]


async def test_a_key_deleted_on_one_replica_is_refused_at_once_by_another(cluster: Cluster) -> None:
    status, created = await cluster.call(0, "POST", "/api/v1/accounts/api-key", json={"label": "temporary"})
    assert status == 200, created
    as_key = {"Authorization": f"Bearer {created['grantKey']}"}
    assert (await cluster.call(1, "GET", "/api/v1/ai-gateways", headers=as_key))[0] == 200  # cached on replica 1
    status, keys = await cluster.call(2, "GET", "/api/v1/accounts/api-key")
    [key_id] = [k["id"] for k in keys["apiKeys"] if k["label"] == "temporary"]
    assert (await cluster.call(2, "DELETE", f"/api/v1/accounts/api-key/{key_id}"))[0] == 200
    status, body = await cluster.call(1, "GET", "/api/v1/ai-gateways", headers=as_key)
    assert (status, body) == (401, {"message": "Missing or invalid API key."})


async def test_a_takeover_recorded_through_one_replica_is_honoured_by_all_at_once(cluster: Cluster) -> None:
    chat = 1010
    client_id = cluster.webhook_path.split("/")[-2]
    assert await cluster.push(0, cluster.telegram.text_update(chat, "hello")) == 200
    await cluster.telegram.wait_for_messages(1, timeout=WAIT, chat_id=chat)
    _, sessions = await cluster.call(1, "GET", f"/api/v1/web-chat-client/{client_id}/sessions")
    [session] = [s for s in sessions if s["tagName"] == f"Telegram:{chat}"]
    path = f"/api/v1/web-chat-client/{client_id}/sessions/{session['id']}"
    status, taken = await cluster.call(1, "POST", path + "/handoff", json={"agent": "Paula"})
    assert status == 200 and taken["handoff"]["state"] == "human", taken

    before = len(cluster.fake.requests)
    for replica in (2, 0):
        assert await cluster.push(replica, cluster.telegram.text_update(chat, f"anyone there? ({replica})")) == 200
    await no_more_messages(cluster, chat, 1)
    assert len(cluster.fake.requests) == before

    status, back = await cluster.call(2, "POST", path + "/resume")
    assert status == 200 and back["handoff"]["state"] == "bot", back
    assert await cluster.push(1, cluster.telegram.text_update(chat, "hello again")) == 200
    replies = await cluster.telegram.wait_for_messages(2, timeout=WAIT, chat_id=chat)
    assert replies[1]["text"] == "echo: hello again"
    said = [m["content"] for m in cluster.fake.requests[-1].body["messages"] if m["role"] == "user"]
    assert said[-3:] == ["anyone there? (2)", "anyone there? (0)", "hello again"]


async def test_a_document_written_through_one_replica_is_found_through_the_others_indexed_once(
    cluster: Cluster,
) -> None:
    status, created = await cluster.call(0, "POST", "/api/v1/collections", json={"collectionName": "Replicated"})
    assert status == 200, created
    collection = created["collectionId"]
    lines = b"".join(b'{"docId": "d%d", "text": "replicated warranty number %d"}\n' % (i, i) for i in range(30))
    form = aiohttp.FormData()
    form.add_field("documents", lines, filename="docs.jsonl")
    status, body = await cluster.call(0, "POST", f"/api/v1/collections/{collection}/documents", data=form)
    assert status == 200 and body["enqueued"] == 30, body
    async with asyncio.timeout(WAIT):
        while (await cluster.call(1, "GET", f"/api/v1/collections/{collection}"))[1]["state"]["indexed"] < 30:
            await asyncio.sleep(0.05)
    status, found = await cluster.call(2, "POST", "/api/v1/query",
                                       json={"term": "warranty 7", "collections": [collection], "top": 1})
    assert status == 200 and found[0]["documentName"] == "d7"
    indexed = 0
    for replica in range(REPLICAS):
        async with cluster.http.get(cluster.urls[replica] + "/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith('botline_knowledge_documents_indexed_total{outcome="indexed"}'):
                    indexed += int(float(line.split()[-1]))
    assert indexed == 30  # each document indexed by exactly one replica
    status, _ = await cluster.call(1, "DELETE", f"/api/v1/collections/{collection}/documents/{found[0]['documentId']}")
    status, found = await cluster.call(2, "POST", "/api/v1/query",
                                       json={"term": "warranty 7", "collections": [collection], "top": 30})
    assert "d7" not in [r["documentName"] for r in found]


async def test_an_agent_message_sent_through_one_replica_wakes_the_page_held_by_another(cluster: Cluster) -> None:
    status, client = await cluster.call(0, "POST", "/api/v1/web-chat-client", json=client_body(cluster.gateway_id))
    assert status == 200, client
    status, session = await cluster.call(0, "POST", f"/api/v1/web-chat-client/{client['id']}/sessions", json={})
    assert status == 200, session
    async with cluster.http.get(cluster.urls[2] + public(session["accessKey"], "/events")) as stream:
        assert stream.status == 200  # the open page's stream, held by replica 2
        status, body = await cluster.call(
            1, "POST", f"/api/v1/web-chat-client/{client['id']}/sessions/{session['sessionId']}/messages",
            json={"content": "Paula here, how can I help?", "agent": "Paula"})
        assert status == 200, body
        async with asyncio.timeout(WAIT):
            line = await stream.content.readline()
        assert line == b"event: messages\n"
