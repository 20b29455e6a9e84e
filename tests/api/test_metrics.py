"""GET /metrics: what an operator's Prometheus sees after real traffic through a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from botline.app import STORE
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.metrics import scrape
from tests.support.redis_server import OwnRedis
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import create_client, open_session, prompt, public

TOKEN = "metrics-scrape-token-0123456789"


async def web_chat(server: RunningServer, fake: FakeLLM, **parameters: Any) -> str:
    client_id = await create_client(server, fake, **parameters)
    return str((await open_session(server, client_id, tag="ana"))["accessKey"])


async def test_a_web_chat_turn_counts_the_turn_the_model_call_and_its_tokens(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await web_chat(server, fake_llm)
    fake_llm.script(Reply(text="Hello!", prompt_tokens=30, completion_tokens=4))

    status, _ = await server.call("POST", public(key, "/prompt"), json=prompt("Hi"))

    assert status == 200
    metrics = await scrape(server)
    assert metrics.value("botline_turns_total", channel="webchat", outcome="answered") == 1
    # An API-made gateway's model is a tenant's choice: an open /metrics labels it "other" (test_l5_...).
    assert metrics.value("botline_model_call_seconds_count", model="other") == 1
    assert metrics.value("botline_model_first_token_seconds_count", model="other") == 1  # web chat streams
    assert metrics.value("botline_model_tokens_total", model="other", kind="prompt") == 30
    assert metrics.value("botline_model_tokens_total", model="other", kind="completion") == 4
    assert metrics.value("botline_sse_streams_open") == 0


async def test_a_refused_prompt_and_a_failed_model_call_are_counted_apart(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    key = await web_chat(server, fake_llm, limitingParameters={"messagesPerHour": 1})
    fake_llm.script(Reply(status=500))

    await server.call("POST", public(key, "/prompt"), json=prompt("first"))
    status, _ = await server.call("POST", public(key, "/prompt"), json=prompt("second"))

    assert status == 429
    metrics = await scrape(server)
    assert metrics.value("botline_turns_total", channel="webchat", outcome="failed") == 1
    assert metrics.value("botline_turns_total", channel="webchat", outcome="refused") == 1
    assert metrics.value("botline_model_call_errors_total", model="other") == 1
    assert metrics.value("botline_turns_total", outcome="answered") == 0


async def test_v1_turns_are_counted_by_outcome(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="ok"), Reply(status=503))
    body = {"model": gateway, "messages": [{"role": "user", "content": "x"}]}

    assert (await server.call("POST", "/v1/chat/completions", json=body))[0] == 200
    assert (await server.call("POST", "/v1/chat/completions", json=body))[0] == 502

    metrics = await scrape(server)
    assert metrics.value("botline_turns_total", channel="v1", outcome="answered") == 1
    assert metrics.value("botline_turns_total", channel="v1", outcome="failed") == 1
    assert metrics.value("botline_model_first_token_seconds_count") == 0  # not streamed


async def test_open_streams_are_counted_while_they_are_open(server: RunningServer, fake_llm: FakeLLM) -> None:
    key = await web_chat(server, fake_llm)
    gateway = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="one two three", delay=0, chunk_delay=0.2), Reply(text="four five", chunk_delay=0.2))
    v1_body = {"model": gateway, "messages": [{"role": "user", "content": "x"}], "stream": True}

    async with (server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("count")) as chat,
                server.http.post(server.url + "/v1/chat/completions", json=v1_body,
                                 headers=server.headers()) as v1):
        await chat.content.readline()
        await v1.content.readline()  # both have sent their first event
        during = await scrape(server)
        await chat.read()
        await v1.read()

    assert during.value("botline_sse_streams_open", endpoint="webchat") == 1
    assert during.value("botline_sse_streams_open", endpoint="v1") == 1
    after = await scrape(server)
    assert after.value("botline_sse_streams_open", endpoint="webchat") == 0
    assert after.value("botline_sse_streams_open", endpoint="v1") == 0


async def test_a_scheduled_continuation_counts_its_activation_and_lateness(
    tmp_path: Any, fake_llm: FakeLLM
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", scheduler={"min_delay_seconds": 0})
    fake_llm.script(
        Reply(tool_calls=[ToolCall("schedule_message", {"delaySeconds": 0, "reason": "say hi"})]),
        Reply(text="Scheduled."), Reply(text="Hi, as promised!"),
    )
    async with running_server(settings) as server:
        key = await web_chat(server, fake_llm, allowScheduledContinuations=True)
        await server.call("POST", public(key, "/prompt"), json=prompt("say hi right away"))
        async with asyncio.timeout(10):
            while (await scrape(server)).value("botline_schedule_activations_total") == 0:
                await asyncio.sleep(0.05)
        metrics = await scrape(server)

    assert metrics.value("botline_schedule_activations_total", outcome="delivered") == 1
    assert metrics.value("botline_schedule_lateness_seconds_count") == 1
    assert metrics.value("botline_turns_total", channel="scheduler", outcome="answered") == 1
    assert metrics.value("botline_turns_total", channel="webchat", outcome="answered") == 1


async def test_a_store_failure_is_counted_by_backend_operation_and_kind(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    await create_gateway(server, fake_llm)
    assert server.app is not None
    await server.app[STORE].close()  # the database goes away under a running server

    status, body = await server.call("GET", "/api/v1/ai-gateways")

    assert status == 503 and "Storage is unavailable" in body["message"]
    metrics = await scrape(server)
    assert metrics.value("botline_store_errors_total", backend="sqlite", error="unavailable") == 1
    assert metrics.value("botline_store_errors_total", operation="SqliteGateways.list_for_account") == 1


async def test_an_unreachable_redis_is_counted_until_it_is_back(tmp_path: Path, fake_llm: FakeLLM) -> None:
    with OwnRedis(tmp_path) as redis:
        async with running_server(make_settings(redis.url)) as server:
            await create_gateway(server, fake_llm)
            redis.kill()
            status, _ = await server.call("GET", "/api/v1/ai-gateways")
            down = await scrape(server)
            redis.start()
            assert (await server.call("GET", "/api/v1/ai-gateways"))[0] == 200
            up = await scrape(server)

    assert status == 503
    assert down.value("botline_store_errors_total", backend="redis", error="unavailable") >= 1  # + background work
    assert down.value("botline_store_errors_total", operation="RedisGateways.list_for_account") == 1
    assert up.value("botline_store_errors_total", operation="RedisGateways.list_for_account") == 1


async def test_each_app_counts_its_own_traffic(server: RunningServer, fake_llm: FakeLLM, tmp_path: Any) -> None:
    key = await web_chat(server, fake_llm)
    await server.call("POST", public(key, "/prompt"), json=prompt("Hi"))
    async with running_server(make_settings(f"sqlite:///{tmp_path / 'other.db'}")) as other:
        assert (await scrape(other)).value("botline_turns_total") == 0
    assert (await scrape(server)).value("botline_turns_total") == 1


async def test_process_metrics_are_served(server: RunningServer) -> None:
    names = (await scrape(server)).names()
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= names


class TestWithAToken:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"server": {"metrics_token": TOKEN}}

    async def test_metrics_need_the_token(self, server: RunningServer) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            async with server.http.get(server.url + "/metrics", headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert "server.metrics_token" in (await response.json())["message"]
                assert TOKEN not in await response.text()
        assert "process_cpu_seconds_total" in (await scrape(server, TOKEN)).names()


async def test_without_a_token_metrics_need_no_credentials(server: RunningServer) -> None:
    async with server.http.get(server.url + "/metrics") as response:
        assert response.status == 200
        assert "process_cpu_seconds_total" in await response.text()


class TestModelNames:
    """Review finding L5: an open /metrics must not list the models the tenants chose."""

    @pytest.fixture
    def settings_overrides(self, fake_llm: FakeLLM) -> dict[str, Any]:
        declared = {"name": "operator", "parameters": {"baseAddress": fake_llm.base_url, "apiKey": UPSTREAM_KEY,
                                                       "modelName": "operator-model"}}
        return {"gateways": [declared]}

    async def test_l5_an_open_metrics_page_names_only_the_models_declared_in_the_config(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        tenant = await web_chat(server, fake_llm, gateway={"modelName": "acme-secret-finetune"})
        await server.call("POST", public(tenant, "/prompt"), json=prompt("Hi"))
        status, answer = await server.call("POST", "/v1/chat/completions",
                                           json={"model": "operator", "messages": [{"role": "user", "content": "x"}]})
        assert status == 200, answer

        async with server.http.get(server.url + "/metrics") as response:
            text = await response.text()
        assert "acme-secret-finetune" not in text
        metrics = await scrape(server)
        assert metrics.value("botline_model_call_seconds_count", model="other") == 1
        assert metrics.value("botline_model_call_seconds_count", model="operator-model") == 1


class TestModelNamesBehindAToken:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"server": {"metrics_token": TOKEN}}

    async def test_l5_behind_the_token_the_first_models_of_any_account_are_named(
        self, server: RunningServer, fake_llm: FakeLLM
    ) -> None:
        key = await web_chat(server, fake_llm, gateway={"modelName": "acme-finetune"})
        await server.call("POST", public(key, "/prompt"), json=prompt("Hi"))
        assert (await scrape(server, TOKEN)).value("botline_model_call_seconds_count", model="acme-finetune") == 1
